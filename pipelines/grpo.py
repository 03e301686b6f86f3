"""python -m pipelines.grpo --config configs/tiny/grpo.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import grpo

if __name__ == "__main__":
    main(grpo)
