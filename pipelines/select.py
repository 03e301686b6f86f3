"""python -m pipelines.select --config configs/tiny/select.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import select

if __name__ == "__main__":
    main(select)
