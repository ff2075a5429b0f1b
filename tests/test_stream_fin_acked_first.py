"""A stream whose FIN is acknowledged before its (lost, resent) data still
reaches Data Recvd once the data is acknowledged (RFC 9000 §3.1)."""

from ghostwire.quic.stream_send import StreamSender
from ghostwire.quic.stream_states import SendState


def test_fin_acked_before_the_data_still_reaches_data_recvd() -> None:
    s = StreamSender(max_stream_data=1000)
    s.write(b"hello")
    _, off1, d1, fin1, _ = s.pop_frame(100, 1000)  # packet 1: "hello"
    s.write(b"", end_stream=True)
    _, off2, d2, fin2, _ = s.pop_frame(100, 1000)  # packet 2: empty FIN
    assert (off1, d1, fin1) == (0, b"hello", False) and (off2, d2, fin2) == (5, b"", True)
    s.on_frame_delivered(off1, 5, False, False)  # packet 1 lost
    s.on_frame_delivered(off2, 0, True, True)  # packet 2 (FIN) acked
    _, off3, d3, fin3, _ = s.pop_frame(100, 1000)  # retransmission of "hello"
    assert d3 is not None
    s.on_frame_delivered(off3, len(d3), fin3, True)  # acked
    assert s.acked_offset == 5
    assert s.state is SendState.DATA_RECVD, s.state
