"""python -m pipelines.best_of_n --config configs/tiny/best_of_n.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import best_of_n

if __name__ == "__main__":
    main(best_of_n)
