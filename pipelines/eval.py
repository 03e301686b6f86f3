"""python -m pipelines.eval --config configs/tiny/eval.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import eval as eval_stage

if __name__ == "__main__":
    main(eval_stage)
