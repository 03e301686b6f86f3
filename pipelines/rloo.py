"""python -m pipelines.rloo --config configs/tiny/rloo.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import rloo

if __name__ == "__main__":
    main(rloo)
