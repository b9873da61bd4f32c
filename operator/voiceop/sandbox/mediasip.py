"""media-sim's SIP side: a UAS on the pod's address and the agent's SIP port (aiosipua).

INVITE -> 200 with an SDP answer (after a 180 and `ring_s` of ringing, if set) (or 503 while draining, 486 when every slot is
taken); ACK confirms; BYE ends the dialog and frees the slot; re-INVITE is answered with
the same SDP; OPTIONS gets 200 (the edge's dispatcher probes with it). Each dialog is a call
in MediaPod's slots, so voice_active_calls counts real dialogs.

aiosipua was chosen over sippy (a threaded reactor of its own, not asyncio) and pjsua2 (a C
stack with media, more than a signalling stand-in needs): it is asyncio-native, typed, has
no runtime dependencies, retransmits the 200 until the ACK over UDP, and handles dialogs,
re-INVITE, OPTIONS and CANCEL.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiosipua import IncomingCall, SipRequest, SipResponse, SipUAS, negotiate_sdp
from aiosipua.transport import UdpSipTransport


class CallSlots(Protocol):
    """What the SIP side needs of a media pod (mediasim.MediaPod)."""

    def refusal(self) -> tuple[int, str] | None: ...
    def open_dialog(self, call_id: str, duration: float | None = None, caller: str = "") -> bool: ...
    def hang_up(self, call_id: str) -> None: ...
    def is_open(self, call_id: str) -> bool: ...


logger = logging.getLogger("voiceop.media-sim")
SUPPORTED_CODECS = [0, 8]  # PCMU, PCMA
RTP_PORT = 40000  # advertised only: the stand-in carries signalling, not audio


@dataclass
class _RecordRouteTransport(UdpSipTransport):
    """UDP transport that copies an INVITE's Record-Route into its 18x/2xx answers.

    RFC 3261 12.1.1 requires it and aiosipua 0.7 does not: without it the caller never
    learns the edge's route and sends ACK and BYE around it.
    """

    record_routes: dict[str, list[str]] = field(default_factory=dict)

    def remember(self, request: SipRequest) -> None:
        routes = request.headers.get("record-route")
        if routes and request.call_id:
            self.record_routes[request.call_id] = list(routes)

    def forget(self, call_id: str) -> None:
        self.record_routes.pop(call_id, None)

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(message, SipResponse) and 100 < message.status_code < 300:
            cseq = message.cseq
            routes = self.record_routes.get(message.call_id or "")
            if (
                routes
                and cseq is not None
                and cseq.method == "INVITE"
                and not message.headers.get("record-route")
            ):
                for route in routes:
                    message.headers.append("Record-Route", route)
        super().send(message, addr)


class SipFrontend:
    def __init__(self, pod: CallSlots, host: str, port: int, ring_s: float = 0.0) -> None:
        # An agent answers at once by default. A 180 sent just before the 200 can overtake
        # it through an edge with several UDP workers (seen with Kamailio, children=2), and a
        # 180 after the 200 makes strict callers (sipp) abort the call.
        self.ring_s = ring_s
        self.pod = pod
        self.host = host
        self.port = port
        self.transport = _RecordRouteTransport(local_addr=(host, port))
        self.uas = SipUAS(self.transport, user_agent="voiceop-media-sim")
        self.uas.on_invite = self._on_invite
        self.uas.on_reinvite = self._on_reinvite
        self.uas.on_bye = self._on_bye
        self.uas.on_cancel = self._on_cancel
        self.uas.on_ack_timeout = self._on_gone
        self.uas.on_session_expired = self._on_gone

    async def start(self) -> None:
        await self.uas.start()

    async def stop(self) -> None:
        await self.uas.stop()

    def _answer(self, call: IncomingCall) -> None:
        if call.sdp_offer is None:
            call.accept()
            return
        try:
            answer, _ = negotiate_sdp(
                offer=call.sdp_offer, local_ip=self.host, rtp_port=RTP_PORT, supported_codecs=SUPPORTED_CODECS
            )
        except ValueError:
            call.reject(488, "Not Acceptable Here")
            self.pod.hang_up(call.call_id)
            return
        call.accept(answer)

    def _on_invite(self, call: IncomingCall) -> None:
        refusal = self.pod.refusal()
        if refusal is not None:
            call.reject(*refusal)
            return
        if not self.pod.open_dialog(call.call_id, caller=call.caller):
            call.reject(486, "Busy Here")
            return
        self.transport.remember(call.invite)
        if self.ring_s <= 0:
            self._answer(call)
            return
        call.ringing()
        asyncio.get_running_loop().call_later(self.ring_s, self._answer_if_open, call)

    def _answer_if_open(self, call: IncomingCall) -> None:
        if self.pod.is_open(call.call_id):  # the caller may have cancelled while it rang
            self._answer(call)

    def _on_reinvite(self, call: IncomingCall) -> None:
        self._answer(call)

    def _on_bye(self, call: IncomingCall, request: object) -> None:
        self.transport.forget(call.call_id)
        self.pod.hang_up(call.call_id)

    def _on_gone(self, call: IncomingCall) -> None:
        self.transport.forget(call.call_id)
        self.pod.hang_up(call.call_id)

    def _on_cancel(self, request: object, addr: tuple[str, int]) -> None:
        call_id = getattr(request, "call_id", None)
        if call_id:
            self.pod.hang_up(call_id)
