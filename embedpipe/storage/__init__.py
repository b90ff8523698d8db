"""Where files live, below the file formats: a location (local path or object-store URL) resolved to
a pyarrow filesystem, and a directory there with the few operations a run needs. The writing
discipline for local files (atomic rename, staged directories, locks) is ``embedpipe.fsio``.

    filesystem.py  a path or URL -> (pyarrow filesystem, path inside it); the Hugging Face Hub switch
    store.py       a directory on any filesystem: list, read, write whole, hash, delete
"""
