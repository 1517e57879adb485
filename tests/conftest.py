import sys
from pathlib import Path

# test helper modules (toy_task, *_helpers) live beside the tests
sys.path.insert(0, str(Path(__file__).parent))
