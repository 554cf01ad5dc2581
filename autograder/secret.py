"""The course key: the secret that hidden inputs are drawn from.

A grading seed alone cannot keep hidden inputs secret: it is a small
number, so code in the hidden-check process could try seeds until one
reproduces the inputs it was given, and then know (or signal) the seed.
Hidden inputs and the sandboxes' seeds are therefore keyed hashes
(HMAC-SHA256) of the seed, with a key the instructor keeps:

    hidden inputs of a test cell   HMAC(key, "hidden:<seed>:<grade id>")
    a sandbox's random sources     HMAC(key, "sandbox:<seed>")

The key is 32 random bytes (``os.urandom``), made on first use, in a file
that only its owner may read (mode 0600): by default ``OUT/.grading-key``
for a class (``grade --key-file`` names another), and a key made when a
Gradescope zip is built, inside it.  A sandbox never sees it: the grader
keeps it in its own memory, Landlock lets a sandbox read only the Python
installation, and a sandbox with a uid of its own cannot read a root-owned
0600 file.  The same key and seed give the same grades, byte for byte;
another key gives other hidden inputs.  Keep the file with the grades:
regrading with the same seed needs it.

Without a key (``key=None``: tests, a grade_notebook call of one's own)
the hash is keyed with nothing, so anyone who knows the seed can compute
the hidden inputs: nothing is secret then, and the results say so
(``extra_data.sandbox.secret_key``).  The same holds where the fence has
no Landlock and no uid switch, since a sandbox could read the key file.
"""
import hashlib
import hmac
import os
from pathlib import Path

KEY_BYTES = 32
KEY_FILE = ".grading-key"  # in OUT, unless --key-file says otherwise


class BadKey(ValueError):
    """A key file that cannot be used (wrong size, readable by others)."""


def load_or_create(path):
    """The key in ``path`` (hex text), made there first if the file does not exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(KEY_BYTES).hex() + "\n")
    if path.stat().st_mode & 0o077:
        raise BadKey(f"the key file {path} may be read by others: chmod 600 it")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise BadKey(f"{path} does not hold a key ({2 * KEY_BYTES} hex digits)")
    return key


def new_key_text():
    """A fresh key as the text of a key file (for a Gradescope zip)."""
    return os.urandom(KEY_BYTES).hex() + "\n"


def _mac(key, label):
    return hmac.new(key or b"", label.encode(), hashlib.sha256).digest()


def hidden_entropy(key, seed, cell):
    """The entropy of the hidden inputs of test cell ``cell`` (for
    ``np.random.default_rng``): 256 bits no sandbox can compute."""
    return int.from_bytes(_mac(key, f"hidden:{seed}:{cell}"), "little")


def sandbox_seed(key, seed):
    """The seed of a sandbox's global random sources (63 bits)."""
    return int.from_bytes(_mac(key, f"sandbox:{seed}")[:8], "little") >> 1
