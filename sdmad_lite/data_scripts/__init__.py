"""Download and preparation of the real datasets (colab and paper profiles), one module per dataset.

Each module holds the library functions of its dataset and a command line: ``add_arguments(parser)``,
``run(args)`` and ``main(argv)``. Three ways to run one, all the same code::

    sdmad prepare NAME ...                       # the command (sdmad_lite/cli/prepare.py)
    python -m sdmad_lite.data_scripts.NAME ...   # any install, Colab included
    python data_scripts/NAME.py ...              # a clone: the thin scripts at the top of the repository

See ``data_scripts/README.md`` at the top of the repository. Only the ``sdmad`` command imports these
modules; they are left out of the result cache's code fingerprint (``CONSUMERS``): they cannot change a
run's result.
"""
