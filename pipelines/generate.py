"""python -m pipelines.generate --config configs/tiny/generate.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import generate

if __name__ == "__main__":
    main(generate)
