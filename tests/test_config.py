"""params.yaml → validated config: every error names the key and the value."""

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_params_files_parse():
    p = load_params(ROOT / "params.yaml")
    assert p.prepare.bands == 31 and p.prepare.split.test == 5
    assert [c.label for c in p.degrade.cases] == [
        "noniid",
        "stripe",
        "deadline",
        "impulse",
        "mixture",
        "blur-g1.6/noniid",
        "sr-x2/iid-10",
        "inpaint-50/iid-10",
        # the hyper-guidance suite: Gaussian blur at 3 % and 7 %, camera shake at 3 %
        "blur-g1.6/iid-7.65",
        "blur-g1.6/iid-17.85",
        "blur-m9/iid-7.65",
        "blur-g1.6/quadrants",  # 1/2/3/4 % on the four quadrants
        # the adversarial regulariser's generalisation study: σ = 0.05, 0.2, 0.4
        "iid-12.75",
        "iid-51",
        "iid-102",
    ]
    tasks = [c.task for c in p.degrade.cases][5:]
    assert tasks == ["blur-g1.6", "sr-x2", "inpaint-50", "blur-g1.6", "blur-g1.6", "blur-m9",
                     "blur-g1.6", "denoise", "denoise", "denoise"]  # fmt: skip
    assert p.train.methods == ["dlw", "guidance", "rg", "alr"]
    paper = load_params(ROOT / "profiles" / "paper.yaml")
    assert paper.prepare.source == "icvl" and paper.device in ("cuda", "auto")
    labels = [c.label for c in paper.degrade.cases]
    assert "iid-50" in labels and {"iid-12.75", "iid-25.5", "iid-51", "iid-76.5", "iid-102"} <= set(
        labels
    )
    assert paper.train.methods == ["dlw", "guidance", "rg", "alr"]


def test_defaults_round_trip_through_plain_values():
    p = parse_params({})
    assert parse_params(yaml.safe_load(yaml.safe_dump(p.to_dict()))) == p


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prepar": {}}, r"prepar: unknown key"),
        ({"prepare": {"sclae": 0.5}}, r"prepare.sclae: unknown key"),
        ({"seed": -1}, r"seed = -1"),
        ({"seed": 1.5}, r"seed = 1.5: must be an integer"),
        ({"device": "tpu"}, r"device = 'tpu': must be one of"),
        ({"prepare": {"scale": 0}}, r"prepare.scale = 0.0"),
        ({"prepare": {"bands": 0}}, r"prepare.bands = 0"),
        ({"prepare": {"tile_size": "big"}}, r"prepare.tile_size = 'big'"),
        ({"prepare": {"source": "web"}}, r"prepare.source = 'web'"),
        ({"prepare": {"source": "icvl"}}, r"prepare.path = None: source 'icvl' needs"),
        ({"prepare": {"split": {"test": 0}}}, r"prepare.split.test = 0"),
        ({"prepare": {"n_endmembers": 3}}, r"prepare.n_endmembers = 3"),
        ({"prepare": {"images": ["a", "a"]}}, r"prepare.images = \['a'\]: names listed twice"),
        (
            {"degrade": {"cases": [{"name": "iid", "sigma_255": -5}]}},
            r"degrade.cases\[0\].sigma_255 = -5.0",
        ),
        (
            {"degrade": {"cases": [{"name": "impulse", "density": 1.2}]}},
            r"degrade.cases\[0\].density = 1.2",
        ),
        ({"degrade": {"cases": ["noniid", "noniid"]}}, r"case labels must be unique"),
        ({"degrade": {"cases": []}}, r"degrade.cases"),
        ({"degrade": {"splits": ["train"]}}, r"degrade.splits\[0\] = 'train'"),
        ({"ray": {"num_cpus": 0}}, r"ray.num_cpus = 0"),
    ],
)
def test_bad_values_name_the_key_and_value(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(data)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_params(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 1\nprepare: {}\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3: key 'seed' appears twice"):
        load_params(dup)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("degrade:\n  cases:\n    - {name: iid, sigma: 5}\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: degrade.cases\[0\].sigma: unknown key"):
        load_params(unknown)


def test_a_stage_stops_with_one_clear_line_on_bad_params(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("prepare:\n  split: {train: 1, val: 1, test: -2}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "prepare.split.test = -2" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A top-level typo: reported with the closest known key.
        ("seed: 1\nsead: 3\n", r"bad.yaml: sead: unknown key \(did you mean 'seed'"),
        # Keys of mixed types used to crash the sorting of the unknown keys.
        ("1: 2\nsead: 3\n", r"bad.yaml: 1, sead: unknown keys"),
        # A YAML list (or scalar) where a section belongs names the key and what it got.
        ("train: [1, 2]\n", r"bad.yaml: train = \[1, 2\]: must be a mapping .* not a list"),
        ("- 1\n- 2\n", r"bad.yaml: the top level = \[1, 2\]: must be a mapping"),
        (
            "evaluate:\n  restorers: [tv]\n",
            r"bad.yaml: evaluate.restorers = \['tv'\]: must be a mapping",
        ),
        # the sections evaluate.restorers replaced are unknown keys, named with the file
        ("evaluate:\n  targets: {tv: {}}\n", r"bad.yaml: evaluate.targets: unknown key"),
        # A list used as a key (``? [a, b]``) is refused with the file and line.
        ("seed: 1\n? [a, b]\n: 3\n", r"bad.yaml:2: a key must be a name"),
    ],
)
def test_bad_structure_names_the_file_and_key(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(bad)


def test_a_non_utf8_file_is_named_with_its_line(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("seed: 1\nprepare:\n  path: /data/caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml:3: not UTF-8 text \(byte 0xe9"):
        load_params(bad)


def test_check_file_reports_every_section_and_the_deep_checks(tmp_path):
    from pipeline.config import check_file

    assert check_file(ROOT / "params.yaml") == []
    assert check_file(ROOT / "profiles" / "paper.yaml") == []
    bad = tmp_path / "p.yaml"
    bad.write_text("sead: 3\ntrain: [1, 2]\nprepare: {scale: 2}\nseed: 1\n")
    errors = check_file(bad)
    assert len(errors) == 3, errors
    assert errors[0].startswith(f"{bad}: sead: unknown key")
    assert errors[1].startswith(f"{bad}: prepare.scale = 2")
    assert errors[2].startswith(f"{bad}: train = [1, 2]")
    # Checks beyond the schema: restorer overrides and names (they need the registries) and
    # report options.
    deep = tmp_path / "deep.yaml"
    deep.write_text("evaluate: {restorers: {tv_l1: {foo: 1}}}\nreport: {confidence: 2.0}\n")
    errors = check_file(deep)
    assert [e.split(":")[1].strip() for e in errors] == [
        "evaluate.restorers.tv_l1.foo",
        "report.confidence = 2.0",
    ]
    unknown = tmp_path / "unknown_restorer.yaml"
    unknown.write_text("evaluate: {restorers: {tv: {}, tvx: {}}}\n")
    (error,) = check_file(unknown)
    assert error.startswith(f"{unknown}: evaluate.restorers.tvx: unknown restorer 'tvx'")
    assert all(e.startswith(str(deep)) for e in errors)
