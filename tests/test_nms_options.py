"""--iou and --agnostic-nms for the families that run no NMS (NMS in the graph, or a head that needs none): refused
where they are given, with one line, rather than taken and ignored."""

from __future__ import annotations

from dataclasses import replace

import heads
import pytest

from ovq.cli import main
from ovq.core.errors import ConfigError
from ovq.core.metadata import write_info
from ovq.model.conversion import prepare, save
from ovq.model.decoders import BUILTIN
from ovq.model.detector import Detector

NO_NMS = {"yolo_e2e": heads.end_to_end_head(), "rtdetr": heads.end_to_end_head(normalised=True),
          "ssd": heads.ssd_head()}


def test_exactly_the_families_without_nms_say_why():
    assert {name for name, dec in BUILTIN.items() if getattr(dec, "no_nms", "")} == {
        "yolo_e2e", "rtdetr", "ssd", "torchvision"}


@pytest.mark.parametrize("family", sorted(NO_NMS))
@pytest.mark.parametrize(("flags", "says"), [
    (["--iou", "0.3"], "--iou 0.3: ovq runs no NMS for family '{}'"),
    (["--agnostic-nms"], "--agnostic-nms: ovq runs no NMS for family '{}'"),
])
def test_convert_refuses_nms_options_for_a_family_without_nms(tmp_path, capsys, family, flags, says):
    src = heads.save(NO_NMS[family], tmp_path / "m.xml")
    assert main(["convert", src, "-o", str(tmp_path / "ir"), "-q", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says.format(family) in err[0] and "changes nothing" in err[0], err
    assert not (tmp_path / "ir").exists()


def test_predict_refuses_iou_for_the_real_ssd_model(assets, tmp_path, capsys):
    code = main(["predict", str(assets / "models/person-detection-retail-0013-fp32"),
                 str(assets / "images/person.jpg"), "-o", str(tmp_path / "out"), "--iou", "0.3", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("ovq predict: error: --iou 0.3: ovq runs no NMS for family 'ssd' (its DetectionOutput")
    assert not (tmp_path / "out").exists()


def test_api_names_the_option_and_a_family_with_nms_takes_both(tmp_path):
    src = heads.save(NO_NMS["rtdetr"], tmp_path / "rtdetr.xml")
    with pytest.raises(ConfigError, match=r"^agnostic_nms: ovq runs no NMS for family 'rtdetr'"):
        Detector(src, agnostic_nms=True)
    assert Detector(src, agnostic_nms=False).params.agnostic is False  # what it does anyway: not refused
    yolo = Detector(heads.save(heads.dfl_head(), tmp_path / "yolo.xml"), iou=0.3, agnostic_nms=True)
    assert (yolo.info.family, yolo.params.iou_threshold, yolo.params.agnostic) == ("yolo", 0.3, True)


def test_a_stored_agnostic_default_of_a_family_without_nms_is_warned_about_once(tmp_path, ovq_log):
    model, info = prepare(heads.save(NO_NMS["yolo_e2e"], tmp_path / "e2e.xml"))
    write_info(model, replace(info, agnostic_nms=True))  # as an IR converted before the refusal stored it
    xml = save(model, tmp_path / "old")
    Detector(xml)
    said = [m for m in ovq_log.messages() if "stores class-agnostic NMS" in m]
    assert len(said) == 1 and "family 'yolo_e2e' runs no NMS" in said[0], said
