"""python -m pipelines.online_dpo --config configs/tiny/online_dpo.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import online_dpo

if __name__ == "__main__":
    main(online_dpo)
