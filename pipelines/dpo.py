"""python -m pipelines.dpo --config configs/tiny/dpo.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import dpo

if __name__ == "__main__":
    main(dpo)
