import subprocess
import sys

import autosteer_interp


def test_import_is_cheap_and_patches_nothing():
    code = (
        "import sys, logging; hook = sys.excepthook; handlers = list(logging.getLogger().handlers);"
        "import autosteer_interp;"
        "assert sys.excepthook is hook; assert logging.getLogger().handlers == handlers;"
        "heavy = ('torch', 'nnsight', 'transformers', 'transformer_lens', 'matplotlib');"
        "heavy = [m for m in heavy if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve_and_version_is_set():
    for name in autosteer_interp.__all__:
        assert getattr(autosteer_interp, name) is not None
    assert autosteer_interp.__version__.count(".") >= 2


def test_unknown_attribute_raises_attribute_error():
    try:
        autosteer_interp.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")
