"""``python -m emo_models``: see :mod:`emo_models.cli`."""

import sys

from .cli import main

sys.exit(main())
