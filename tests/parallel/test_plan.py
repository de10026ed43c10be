"""Member chunks and how they are dealt: fixed by the population, never by the worker count."""
import pytest

from npegg.parallel import chunk_size, deal, member_chunks, usable_cores


@pytest.mark.parametrize("pop,group", [(8, 2), (12, 2), (1024, 8), (1000, 8), (4096, 128), (2, 2)])
def test_chunks_are_whole_groups_and_cover_the_population(pop, group):
    c = chunk_size(pop, group)
    assert c % group == 0
    chunks = member_chunks(pop, c)
    assert [m for s in chunks for m in range(s.start, s.stop)] == list(range(pop))


@pytest.mark.parametrize("workers", [1, 2, 3, 7, 16])
def test_deal_gives_contiguous_runs_differing_by_at_most_one_chunk(workers):
    chunks = member_chunks(1024, 64)
    shares = deal(chunks, workers)
    assert [c for s in shares for c in s] == chunks
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1


def test_more_workers_than_chunks_is_refused():
    with pytest.raises(ValueError, match="workers must be between 1 and the number of member chunks"):
        deal(member_chunks(8, 4), 3)


def test_usable_cores_is_positive():
    assert usable_cores() >= 1
