import torch

from nsm.data.graph import GraphBatch, GraphStore, _ranges


def tiny_store() -> GraphStore:
    # g0: 2 nodes, 1 edge; g1: 3 nodes, 2 edges; g2: 1 node, no edge.
    g0 = (torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0], [1]]), torch.tensor([2]))
    g1 = (torch.tensor([[2, 0], [3, 1], [4, 0]]), torch.tensor([[0, 2], [1, 1]]), torch.tensor([0, 1]))
    g2 = (torch.tensor([[5, 1]]), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    return GraphStore.from_graphs([g0, g1, g2], [1, 0, 1])


def test_from_graphs_offsets():
    s = tiny_store()
    assert len(s) == 3
    assert s.node_ptr.tolist() == [0, 2, 5, 6]
    assert s.edge_ptr.tolist() == [0, 1, 3, 3]
    assert s.num_nodes().tolist() == [2, 3, 1] and s.num_edges().tolist() == [1, 2, 0]
    assert s.edge_index.tolist() == [[0, 0, 2], [1, 1, 1]]  # still local
    assert s.y.tolist() == [1, 0, 1]


def test_collate_exact():
    s = tiny_store()
    b = s.collate([1, 0, 2])
    assert isinstance(b, GraphBatch) and b.num_graphs == 3 and b.num_nodes == 6
    assert b.x[:, 0].tolist() == [2, 3, 4, 0, 1, 5]
    # g1's edges keep offset 0, g0's edge is shifted by g1's 3 nodes.
    assert b.edge_index.tolist() == [[0, 2, 3], [1, 1, 4]]
    assert b.edge_type.tolist() == [0, 1, 2]
    assert b.batch.tolist() == [0, 0, 0, 1, 1, 2]
    assert b.y.tolist() == [0, 1, 1]


def test_collate_repeat_and_single():
    s = tiny_store()
    b = s.collate(torch.tensor([0, 0]))
    assert b.edge_index.tolist() == [[0, 2], [1, 3]]
    assert b.batch.tolist() == [0, 0, 1, 1]
    one = s.collate([2])
    assert one.edge_index.shape == (2, 0) and one.batch.tolist() == [0]


def test_ranges():
    assert _ranges(torch.tensor([5, 0, 9]), torch.tensor([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]
    assert _ranges(torch.tensor([3]), torch.tensor([0])).numel() == 0


def test_state_dict_round_trip_and_to():
    s = tiny_store()
    t = GraphStore.from_state_dict(s.state_dict())
    for k, v in s.state_dict().items():
        assert torch.equal(v, t.state_dict()[k])
    b = s.collate([0, 1]).to("cpu")
    assert b.num_graphs == 2 and b.x.device.type == "cpu"
