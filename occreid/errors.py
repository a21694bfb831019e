"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class OccreidError(Exception):
    """A problem with the user's input: a path, a file, an option or a config key.

    The message says what is wrong, which file or option, and how to fix it.
    """


def torch_load_problem(exc: BaseException) -> str:
    """A short, complete account of why `torch.load(..., weights_only=True)` refused or failed on a file, for
    an error message: never torch's whole text, never cut mid-sentence, and never torch's advice to retry with
    weights_only=False (which would run whatever code the file carries)."""
    import re

    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"it holds pickled Python objects{what}, not only tensors; occreid loads such files only as "
            "plain weights (weights_only=True), because unpickling them could run arbitrary code"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        return type(exc).__name__
    # the first sentence of torch's first line
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return f"{type(exc).__name__}: {sentence}" if len(sentence) <= 300 else f"{type(exc).__name__}"


def npz_problem(exc: BaseException) -> str:
    """Why np.load(allow_pickle=False) could not read a .npz, in a few words."""
    import zipfile

    if isinstance(exc, EOFError) or "No data left" in str(exc):
        return "the file is empty"
    if isinstance(exc, zipfile.BadZipFile):
        return "the file is truncated or not a .npz archive"
    if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
        return "it holds pickled Python objects, which are never loaded (they could run code)"
    if isinstance(exc, KeyError):
        return f"no {exc} array"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
