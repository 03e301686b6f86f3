"""python -m pipelines.rejection_sampling --config configs/tiny/rejection_sampling.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import rejection_sampling

if __name__ == "__main__":
    main(rejection_sampling)
