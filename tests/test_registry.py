"""The one registry (edgeiqa/registry.py): students, teachers, losses and degradations all use it, and the
registered function builds (or computes) the thing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeiqa import losses
from edgeiqa.data import distortions
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.registry import Entry, Registry
from edgeiqa.students import STUDENTS, IQAStudent, create_student, get_student_entry
from edgeiqa.teachers import TEACHERS, IQATeacher, get_teacher_entry


def test_registry_register_get_create_list():
    reg = Registry("widget")

    @reg.register("double")
    def double(x):
        """Twice x."""
        return 2 * x

    @reg.register("square", description="x squared")
    def square(x):
        return x * x

    assert reg.list() == list(reg) == ["double", "square"] and len(reg) == 2 and "double" in reg
    assert reg.get("double") == Entry("double", double, "Twice x.")
    assert reg.get("square").description == "x squared"
    assert reg.create("double", 4) == 8 and reg.create("square", x=3) == 9
    with pytest.raises(EdgeIQAError, match=r"unknown widget 'dobule' \(known: double, square\); did you mean 'double'"):
        reg.get("dobule")
    with pytest.raises(EdgeIQAError, match="unknown widget 'zzz'"):
        reg.create("zzz")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("double")(lambda x: x)
    with pytest.raises(KeyError):  # Mapping access stays a plain lookup
        reg["nope"]


def test_every_registry_is_the_generic_one():
    for reg in (STUDENTS, TEACHERS, losses.LOSSES, distortions.DEGRADATIONS):
        assert isinstance(reg, Registry)
    assert distortions.DISTORTIONS is distortions.DEGRADATIONS.entries
    assert set(losses.LOSSES) == {"mse", "l1", "plcc", "fidelity", "rank", "feature"}


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_registered_student_function_builds_the_student(name):
    views = [ViewSpec("resize", (64, 64))]
    entry = get_student_entry(name)
    model = entry.fn(views, offline_pretrained=False, hidden=8)
    assert isinstance(model, IQAStudent) and model.student_name == name and model.score.in_features == 8
    assert model.backbone.pretrained_cfg["architecture"] == entry.timm_name  # the entry says what it builds
    built = create_student(name, views, offline_pretrained=False, hidden=8)
    assert sorted(built.state_dict()) == sorted(model.state_dict())


def test_registered_teacher_function_builds_the_teacher():
    entry = get_teacher_entry("lite0_mv")
    teacher = entry.fn(hidden=8)
    assert isinstance(teacher, IQATeacher) and teacher.entry is entry and teacher.opinion_dim == 8
    with pytest.raises(EdgeIQAError, match="or 'ensemble'.*did you mean 'lite0_mv'"):
        TEACHERS.create("lite0_m")


def test_loss_and_degradation_registries_compute():
    b = losses.LossBatch(pred=torch.tensor([1.0, 2.0]), target=torch.tensor([0.0, 2.0]),
                         scene=torch.tensor([0, 0]), weight=torch.ones(2))
    assert losses.LOSSES.create("mse", b).item() == pytest.approx(0.5)
    total, parts = losses.combined_loss({"mse": 2.0, "l1": 1.0}, b)
    assert parts == {"mse": 0.5, "l1": 0.5} and total.item() == pytest.approx(1.5)
    img = np.full((16, 16, 3), 128, np.uint8)
    darker = distortions.DEGRADATIONS.create("underexposure", img, 0.5, np.random.default_rng(0))
    assert np.array_equal(darker, distortions.degrade(img, "underexposure", 0.5)) and darker.mean() < 128
