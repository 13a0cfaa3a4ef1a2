"""Variables are substituted by explicit name only."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qcgpj_async.model import substitute, substitute_obj


def test_known_names_replaced_unknown_kept() -> None:
    vs = {"it": "3", "ncores": "4"}
    assert (
        substitute("run ${it} on ${ncores} of ${nnodes} ${x}", vs) == "run 3 on 4 of ${nnodes} ${x}"
    )


def test_dollar_dollar_untouched() -> None:
    script = 'echo $$ pid; kill -0 $$; echo "${it}" $HOME $it'
    assert substitute(script, {"it": "7"}) == 'echo $$ pid; kill -0 $$; echo "7" $HOME $it'


def test_substitute_obj_walks_dicts_and_lists() -> None:
    obj = {"args": ["${it}", 5], "env": {"${it}": "v${it}"}, "n": None}
    assert substitute_obj(obj, {"it": "1"}) == {"args": ["1", 5], "env": {"${it}": "v1"}, "n": None}


@given(st.text())
def test_text_without_known_variables_is_unchanged(text: str) -> None:
    assert substitute(text.replace("${it}", ""), {"it": "X"}) == text.replace("${it}", "")
