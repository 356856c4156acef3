"""The embedded broker's ILLEGAL_GENERATION answers, read as Kafka's REBALANCE_IN_PROGRESS."""

from aiokafka.errors import IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError
from aiokafka.protocol.commit import OffsetCommitResponse_v2
from aiokafka.protocol.group import HeartbeatResponse_v1, JoinGroupResponse_v2

from streams.embedded.group_generation import as_rebalancing

ILLEGAL, REBALANCING, UNKNOWN = IllegalGenerationError.errno, RebalanceInProgressError.errno, UnknownMemberIdError.errno


def test_a_heartbeat_answered_illegal_generation_means_rebalancing():
    assert as_rebalancing(HeartbeatResponse_v1(0, ILLEGAL)).error_code == REBALANCING
    assert as_rebalancing(HeartbeatResponse_v1(0, UNKNOWN)).error_code == UNKNOWN  # really forgotten: left alone


def test_an_offset_commit_keeps_its_other_errors():
    response = OffsetCommitResponse_v2([("t", [(0, ILLEGAL), (1, 0), (2, UNKNOWN)])])
    assert as_rebalancing(response).topics == [("t", [(0, REBALANCING), (1, 0), (2, UNKNOWN)])]


def test_other_responses_are_untouched():
    join = JoinGroupResponse_v2(0, ILLEGAL, 1, "range", "leader", "me", [])
    assert as_rebalancing(join).error_code == ILLEGAL
