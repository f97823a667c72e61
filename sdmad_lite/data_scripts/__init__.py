"""Download and preparation of the real datasets (colab and paper profiles): ``python -m sdmad_lite.data_scripts.NAME``.

See ``README.md`` in this folder. They only use the library; nothing in the library imports them.
"""
