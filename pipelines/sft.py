"""python -m pipelines.sft --config configs/tiny/sft.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import sft

if __name__ == "__main__":
    main(sft)
