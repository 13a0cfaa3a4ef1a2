"""Where runs ran (wd, program name): the runtime's record, not the engine's."""

from __future__ import annotations

from qcgpj_async.runtime._places import RunPlaces


def test_places_by_run_id_with_unknown_ids_none() -> None:
    places = RunPlaces()
    assert places.wd(1) is None and places.pname(1) is None  # nothing noted yet
    places.note(3, "/w/a", "true")
    places.note(5000, "/w/b", "sleep")  # past the first growth
    assert (places.wd(3), places.pname(3)) == ("/w/a", "true")
    assert (places.wd(5000), places.pname(5000)) == ("/w/b", "sleep")
    assert places.wd(4) is None and places.pname(4999) is None
    assert places.wd(10**6) is None  # past the end


def test_repeated_strings_are_shared() -> None:
    places = RunPlaces()
    for run_id in range(1, 100):
        # New but equal strings each time, as each launch builds them.
        places.note(run_id, "".join(["/w/", "x"]), "".join(["tr", "ue"]))
    assert all(places.wd(i) is places.wd(1) for i in range(2, 100))
    assert all(places.pname(i) is places.pname(1) for i in range(2, 100))
