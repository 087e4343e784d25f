"""redact_obj: a new object of the same shape; the input is never mutated."""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict, namedtuple

import pydantic
import pytest

from keyguard.redact import Redactor
from keyguard.secret import Secret
from tests.fakes import github_classic, rand

VALUE = rand(32)
R = "[REDACTED:API]"


@pytest.fixture()
def r() -> Redactor:
    red = Redactor()
    red.add_secret("API", VALUE)
    return red


@dataclasses.dataclass
class Call:
    tool: str
    args: dict
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Frozen:
    token: str
    tags: tuple


class Model(pydantic.BaseModel):
    name: str
    headers: dict[str, str]
    items: list[str] = []


Point = namedtuple("Point", "label value")


def test_containers_keys_and_values(r: Redactor) -> None:
    gh = github_classic()
    data = {
        "k": VALUE,
        VALUE: "key is secret",
        "list": [VALUE, 1, 2.5, None, True, b"raw " + VALUE.encode()],
        "tuple": (VALUE, f"x{VALUE}y"),
        "set": {VALUE, "plain"},
        "frozen": frozenset({VALUE}),
        "nested": {"deep": [{"gh": gh}]},
        "bytearray": bytearray(VALUE.encode()),
        "point": Point("p", VALUE),
        "ordered": OrderedDict(a=VALUE),
        "secret": Secret("API", VALUE),
    }
    before = copy.deepcopy({k: v for k, v in data.items() if k != "secret"})
    out = r.redact_obj(data)
    assert out["k"] == R and R in out and VALUE not in out
    assert out["list"] == [R, 1, 2.5, None, True, b"raw " + R.encode()]
    assert out["tuple"] == (R, f"x{R}y") and type(out["tuple"]) is tuple
    assert out["set"] == {R, "plain"} and type(out["frozen"]) is frozenset
    assert out["nested"]["deep"][0]["gh"] == "[REDACTED:github-pat]"
    assert out["bytearray"] == bytearray(R.encode()) and type(out["bytearray"]) is bytearray
    assert out["point"] == Point("p", R) and type(out["point"]) is Point
    assert type(out["ordered"]) is OrderedDict and out["ordered"]["a"] == R
    assert out["secret"] == R
    # input untouched
    assert {k: v for k, v in data.items() if k != "secret"} == before
    assert VALUE in repr(data["list"])


def test_dataclasses_and_pydantic(r: Redactor) -> None:
    call = Call("http", {"Authorization": f"Bearer {VALUE}"}, note=VALUE)
    out = r.redact_obj(call)
    assert isinstance(out, Call) and out is not call
    assert out.args == {"Authorization": f"Bearer {R}"} and out.note == R
    assert call.note == VALUE and call.args["Authorization"].endswith(VALUE)

    fz = Frozen(VALUE, (VALUE,))
    out_fz = r.redact_obj(fz)
    assert out_fz == Frozen(R, (R,)) and fz.token == VALUE

    m = Model(name="x", headers={"x-api-key": VALUE}, items=[VALUE])
    out_m = r.redact_obj(m)
    assert isinstance(out_m, Model)
    assert out_m.headers == {"x-api-key": R} and out_m.items == [R]
    assert m.headers["x-api-key"] == VALUE


def test_shared_and_cyclic_references(r: Redactor) -> None:
    shared = [VALUE]
    data: dict = {"a": shared, "b": shared}
    data["self"] = data
    out = r.redact_obj(data)
    assert out["a"] == [R] and out["a"] is out["b"]
    assert out["self"] is out


def test_other_objects_pass_through(r: Redactor) -> None:
    obj = object()
    assert r.redact_obj(obj) is obj
    assert r.redact_obj(42) == 42
