"""The VLSafe pairs of the shared data directory (skipped when AUTOSTEER_DATA_DIR / ../shared/data is absent)."""

import pytest

from autosteer_interp.prompts import load_vlsafe

pytestmark = pytest.mark.real


def test_shared_vlsafe_pairs_load_in_step(data_dir):
    pairs = load_vlsafe(data_dir / "vlsafe", deduplicate=False)
    assert len(pairs) == 2000
    assert all(p.harmful.text != p.safe.text for p in pairs)
    assert len(load_vlsafe(data_dir / "vlsafe")) == 1798
    assert pairs[0].meta["image_id"].endswith(".jpg") and pairs[0].meta["caption"]
