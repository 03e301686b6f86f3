"""python -m pipelines.ppo --config configs/tiny/ppo.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import ppo

if __name__ == "__main__":
    main(ppo)
