"""`python -m experiments.multitask`: `experiments.run` under its former name."""

from experiments.run import main, run_from_flags  # noqa: F401  pylint: disable=unused-import

if __name__ == "__main__":
  main()
