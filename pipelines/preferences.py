"""python -m pipelines.preferences --config configs/tiny/preferences.yaml [key=value ...]"""

from rlhf.cli import main
from rlhf.stages import preferences

if __name__ == "__main__":
    main(preferences)
