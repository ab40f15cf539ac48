"""Fleet registry: the example fleet loads; each broken registry fails with its exact message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker.fleet.registry import RegistryError, load_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"


def test_example_fleet_loads_with_vietnamese_names() -> None:
    reg = load_registry(EXAMPLE)
    assert set(reg.centres) == {"qn-tthc", "dn-tthc"}
    assert reg.centres["dn-tthc"].name == "Trung tâm Phục vụ hành chính công thành phố Đà Nẵng"
    assert reg.counters[("qn-tthc", "q02")].services == ("tu-phap", "ho-tich")
    assert reg.devices["qn-q02"].pins["score_4"] == 19
    assert reg.officers["pham-minh-duc"].name == "Phạm Minh Đức"
    assert [d.id for d in reg.active_devices("dn-tthc")] == ["dn-q01", "dn-q02"]
    assert reg.centres["dn-tthc"].timezone == "Asia/Ho_Chi_Minh", "the service day's zone defaults to Vietnam"


# (file, text appended to / replacing it, exact error message); "{f}" is the fleet directory.
BROKEN: list[tuple[str, str, str, str]] = [
    ("devices.toml", "append", '\n[device.x1]\ncentre = "nowhere"\ncounter = "q01"\n',
     "{f}/devices.toml:31: device.x1.centre: centre 'nowhere' is not in centres.toml"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "qn-tthc"\ncounter = "q99"\n',
     "{f}/devices.toml:31: device.x1.counter: counter 'q99' is not a counter of centre 'qn-tthc'"),
    ("devices.toml", "append", '\n[device.qms]\ncentre = "qn-tthc"\ncounter = "q01"\n',
     "{f}/devices.toml:31: device.qms: device id 'qms' is reserved"),
    ("devices.toml", "append", '\n[device.Bad_Id]\ncentre = "qn-tthc"\ncounter = "q01"\n',
     "{f}/devices.toml:31: device.Bad_Id: id 'Bad_Id' must match ^[a-z0-9-]{{1,32}}$"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "qn-tthc"\ncounter = "q01"\nretired = false\n',
     "{f}/devices.toml:31: device.x1.counter: counter 'q01' of centre 'qn-tthc' already has active device "
     "'qn-q01'; retire or move it first"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "dn-tthc"\ncounter = "q01"\nhardware = "buttons"\n'
     "retired = true\n",
     "{f}/devices.toml:31: device.x1.pins: hardware 'buttons' needs a pin map"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "dn-tthc"\ncounter = "q01"\nhardware = "lever"\n',
     "{f}/devices.toml:31: device.x1.hardware: Input should be 'touch', 'buttons' or 'both'"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "dn-tthc"\ncounter = "q01"\nretired = true\n'
     "pins = { score_1 = 5, score_2 = 5 }\n",
     "{f}/devices.toml:31: device.x1.pins: GPIO 5 used by both score_1 and score_2"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "dn-tthc"\ncounter = "q01"\nretired = true\n'
     "pins = { led_1 = 40 }\n",
     "{f}/devices.toml:31: device.x1.pins: pin led_1 = 40 is not a usable BCM GPIO (2..27)"),
    ("devices.toml", "append", '\n[device.x1]\ncentre = "dn-tthc"\ncounter = "q01"\ncolour = "red"\n',
     "{f}/devices.toml:31: device.x1.colour: Extra inputs are not permitted"),
    ("devices.toml", "append", "\n[device.x1\n",
     "{f}/devices.toml:31: not valid TOML: Expected ']' at the end of a table declaration (at line 31, column 11)"),
    ("devices.toml", "prepend", 'owner = "me"\n',
     "{f}/devices.toml: owner: unknown top-level key (expected only [device.<id>] tables)"),
    ("officers.toml", "append", '\n[officer.x1]\nname = "Ngô Văn Tư"\ncentre = "hue"\n',
     "{f}/officers.toml:23: officer.x1.centre: centre 'hue' is not in centres.toml"),
    ("officers.toml", "append", '\n[officer.x1]\ncentre = "qn-tthc"\n',
     "{f}/officers.toml:23: officer.x1.name: Field required"),
    ("centres.toml", "append",
     '\n[centre.hue]\nname = "Huế"\nprovince = "Huế"\n[centre.hue.counter.q1]\nlabel = "Q1"\n',
     "{f}/centres.toml:38: centre.hue.province: String should match pattern '^[a-z0-9-]{{1,32}}$'"),
    ("centres.toml", "append", '\n[centre.hue]\nname = "Huế"\nprovince = "hue"\n',
     "{f}/centres.toml:38: centre.hue.counter: a centre needs at least one [centre.<id>.counter.<id>]"),
    ("centres.toml", "append", '\n[centre.hue]\nname = "Huế"\nprovince = "hue"\n[centre.hue.counter.q1]\n'
     'label = "Q1"\nservices = ["Đất đai"]\n',
     "{f}/centres.toml:41: centre.hue.counter.q1.services: service 'Đất đai' must match ^[a-z0-9-]{{1,32}}$"),
    ("centres.toml", "append", '\n[centre.hue]\nname = "Huế"\nprovince = "hue"\n[centre.hue.counter.q1]\n'
     'label = "Q1"\nofficer = "nobody"\n',
     "{f}/centres.toml:41: centre.hue.counter.q1.officer: officer 'nobody' is not in officers.toml"),
    ("centres.toml", "append", '\n[centre.hue]\nname = "Huế"\nprovince = "hue"\n[centre.hue.counter.q1]\n'
     'label = "Q1"\nofficer = "le-thi-huong"\n',
     "{f}/centres.toml:41: centre.hue.counter.q1.officer: officer 'le-thi-huong' works at centre 'dn-tthc'"),
    ("officers.toml", "replace", "",
     "{f}/officers.toml: file not found"),
    ("centres.toml", "append", '\n[centre.hue]\nname = "Huế"\nprovince = "hue"\ntimezone = "Asia/Hue"\n'
     '[centre.hue.counter.q1]\nlabel = "Q1"\n',
     "{f}/centres.toml:38: centre.hue.timezone: unknown time zone 'Asia/Hue' (IANA name, e.g. Asia/Ho_Chi_Minh)"),
]


@pytest.mark.parametrize(("name", "mode", "text", "expected"), BROKEN,
                         ids=[f"{i}-{b[0]}" for i, b in enumerate(BROKEN)])
def test_broken_registry_names_file_line_key_problem(tmp_path: Path, name: str, mode: str, text: str,
                                                     expected: str) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    target = fleet / name
    if mode == "append":
        target.write_text(target.read_text(encoding="utf-8") + text, encoding="utf-8")
    elif mode == "prepend":
        target.write_text(text + target.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        target.unlink()
    with pytest.raises(RegistryError) as err:
        load_registry(fleet)
    assert str(err.value) == expected.format(f=fleet)


def test_missing_fleet_directory(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="fleet directory not found"):
        load_registry(tmp_path / "nope")
