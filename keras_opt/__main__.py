"""``python -m keras_opt`` is the ``keras-opt`` command."""

from keras_opt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
