"""python -m pipelines.reward --config configs/tiny/reward.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import reward

if __name__ == "__main__":
    main(reward)
