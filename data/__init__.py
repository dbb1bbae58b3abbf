"""Course data shipped with nstlib (installed as the package ``nstlib.data.manifest``).

``images.tsv`` is the manifest of sample images: name, title, artist, pinned URL,
sha256 and size. The images themselves are never committed; ``nstlib`` downloads
them and checks each against its sha256.
"""
