"""backend.library.hub against the loopback Hub (tests/library/hub_server.py)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from backend.errors import GatedModel, HubUnavailable, InvalidRequest, ModelNotFound
from backend.library import hub
from tests.library.hub_server import (
    GATED_FILE,
    GATED_REPO,
    GEMMA_FILE,
    GEMMA_REPO,
    GOOD_TOKEN,
    MULTI_QUANTS,
    MULTI_REPO,
    NO_ACCESS_TOKEN,
    SMOLLM2_FILE,
    SMOLLM2_REPO,
    SPLIT_FILES,
    SPLIT_REPO,
    HubServer,
)

# The server's fixtures (hub_server, closed_port_endpoint) live next to it.
pytest_plugins = ["tests.library.hub_server"]


def test_search_lists_only_gguf_repos_by_downloads(hub_server: HubServer) -> None:
    found = hub.search_models("", sort="downloads", limit=20)
    assert [r.id for r in found] == [GEMMA_REPO, SMOLLM2_REPO, MULTI_REPO, SPLIT_REPO,
                                     GATED_REPO]
    smol = found[1]
    assert (smol.author, smol.downloads, smol.likes) == ("HuggingFaceTB", 5000, 40)
    assert smol.last_modified is not None and smol.last_modified.year == 2024
    assert found[-1].gated and not smol.gated


def test_search_query_sort_and_limit_across_pages(hub_server: HubServer) -> None:
    assert [r.id for r in hub.search_models("smollm2")] == [SMOLLM2_REPO]
    assert hub.search_models("SmolLM2", sort="likes")[0].id == SMOLLM2_REPO
    assert hub.search_models("", sort="likes")[0].id == MULTI_REPO
    assert hub.search_models("", sort="recent")[0].id == GEMMA_REPO
    hub_server.faults.page_size = 2  # huggingface_hub follows the Link header
    hub_server.requests.clear()
    assert len(hub.search_models("", limit=3)) == 3
    assert [p for _, p, _ in hub_server.requests] == ["/api/models", "/api/models"]
    with pytest.raises(InvalidRequest):
        hub.search_models("x", sort="stars")  # type: ignore[arg-type]


def test_list_quants_multi_quant_repo(hub_server: HubServer) -> None:
    options = hub.list_quants(MULTI_REPO)
    assert [o.quant for o in options] == ["Q2_K", "Q3_K_M", "IQ4_XS", "Q4_K_M", "Q5_K_S",
                                          "Q8_0"]
    repo = hub_server.repos[MULTI_REPO]
    projector = repo.files["mmproj-Multi-F16.gguf"]
    for option in options:
        blob = repo.files[option.primary_file]
        # The repo's vision projector comes with every quant, as the last file.
        assert option.model_files == (option.primary_file,)
        assert option.mmproj == "mmproj-Multi-F16.gguf"
        assert option.sizes == (blob.size, projector.size)
        assert option.total_size == blob.size + projector.size
        assert option.sha256s == (blob.sha256, projector.sha256)
        assert option.revision == repo.commit  # pinned: shards and resumes can't mix commits
    assert set(MULTI_QUANTS) == {o.quant for o in options}  # mmproj and README left out


def test_list_quants_real_gguf_and_split(hub_server: HubServer) -> None:
    (smol,) = hub.list_quants(SMOLLM2_REPO)
    blob = hub_server.repos[SMOLLM2_REPO].files[SMOLLM2_FILE]
    assert (smol.quant, smol.files, smol.total_size) == ("Q4_1", (SMOLLM2_FILE,), blob.size)
    assert smol.sha256s == (blob.sha256,)
    (split,) = hub.list_quants(SPLIT_REPO)
    assert split.quant == "Q8_0" and split.files == SPLIT_FILES and split.is_split
    assert split.total_size == 500_000


def test_list_quants_falls_back_to_the_tree(hub_server: HubServer) -> None:
    expected = hub.list_quants(SPLIT_REPO)
    hub_server.faults.ignore_blobs = True
    hub_server.requests.clear()
    assert hub.list_quants(SPLIT_REPO) == expected
    assert any("/tree/" in path for _, path, _ in hub_server.requests)


def test_fetch_range_reads_a_remote_gguf_header(hub_server: HubServer) -> None:
    head = hub.fetch_range(GEMMA_REPO, GEMMA_FILE, 0, 8)
    assert head[:4] == b"GGUF" and struct.unpack("<I", head[4:8])[0] == 3
    blob = hub_server.repos[GEMMA_REPO].files[GEMMA_FILE]
    assert hub.fetch_range(GEMMA_REPO, GEMMA_FILE, 1000, 5000) == blob.read(1000, 4000)
    assert (hub_server.requests[-1][2]) == "bytes=1000-4999"
    deadline = time.monotonic() + 2  # the server counts after the client already has them
    while hub_server.bytes_served[GEMMA_FILE] < 4008 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub_server.bytes_served[GEMMA_FILE] == 8 + 4000  # not the whole file


def test_file_url_and_head_metadata(hub_server: HubServer) -> None:
    url = hub.file_url(SPLIT_REPO, SPLIT_FILES[0])
    assert url == f"{hub_server.url}/{SPLIT_REPO}/resolve/main/{SPLIT_FILES[0]}"
    info = hub.file_info(SMOLLM2_REPO, SMOLLM2_FILE)
    blob = hub_server.repos[SMOLLM2_REPO].files[SMOLLM2_FILE]
    assert (info.size, info.etag) == (blob.size, blob.sha256)
    assert info.commit == hub_server.repos[SMOLLM2_REPO].commit
    assert hub_server.bytes_served[SMOLLM2_FILE] == 0


@pytest.mark.parametrize("call", [
    lambda: hub.list_quants("nobody/nothing-GGUF"),
    lambda: hub.list_quants(SMOLLM2_REPO, revision="no-such-branch"),
    lambda: hub.fetch_range(SMOLLM2_REPO, "missing.gguf", 0, 4),
    lambda: hub.file_info("nobody/nothing-GGUF", "x.gguf"),
])
def test_missing_repo_file_or_revision(hub_server: HubServer, call: Callable[[], object]) -> None:
    with pytest.raises(ModelNotFound) as err:
        call()
    assert err.value.http_status == 404


def test_invalid_repo_id(hub_server: HubServer) -> None:
    with pytest.raises(InvalidRequest):
        hub.list_quants("../../etc/passwd")


def test_gated_repo_needs_a_token(hub_server: HubServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.list_quants(GATED_REPO)[0].quant == "Q4_0"  # the listing is public
    with pytest.raises(GatedModel) as err:
        hub.fetch_range(GATED_REPO, GATED_FILE, 0, 4)
    assert "HF_TOKEN" in err.value.user_message and err.value.http_status == 403
    with pytest.raises(GatedModel) as err:
        hub.fetch_range(GATED_REPO, GATED_FILE, 0, 4, token=NO_ACCESS_TOKEN)
    assert "doesn't give access" in err.value.user_message
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)  # read on every request
    assert hub.fetch_range(GATED_REPO, GATED_FILE, 0, 4) == b"GGUF"


@pytest.mark.parametrize("given", [True, False], ids=["token-argument", "HF_TOKEN"])
def test_a_wrong_token_is_named_as_the_problem(hub_server: HubServer, given: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid token fails every request, public ones too; the message must say that the
    token is wrong, never ask for one to be set (it was: from HF_TOKEN)."""
    token = "hf_expired_or_mistyped"
    if not given:
        monkeypatch.setenv("HF_TOKEN", token)
    for call in (lambda: hub.fetch_range(GATED_REPO, GATED_FILE, 0, 4,
                                         token=token if given else None),
                 lambda: hub.fetch_range(SMOLLM2_REPO, SMOLLM2_FILE, 0, 4,
                                         token=token if given else None)):
        with pytest.raises(GatedModel) as err:
            call()
        assert "refused the access token" in err.value.user_message
        assert "set the HF_TOKEN" not in err.value.user_message


def test_unreachable_hub_fails_fast(closed_port_endpoint: str) -> None:
    for call in (lambda: hub.search_models("llama"),
                 lambda: hub.list_quants(SMOLLM2_REPO),
                 lambda: hub.fetch_range(SMOLLM2_REPO, SMOLLM2_FILE, 0, 4)):
        began = time.monotonic()
        with pytest.raises(HubUnavailable) as err:
            call()
        assert time.monotonic() - began < 1.5  # no 23 s of huggingface_hub backoff
        assert "works offline" in err.value.user_message
        assert closed_port_endpoint in err.value.user_message
