import sys

from bio_speech_dyt.cli import main

sys.exit(main())
