"""media-sim's SIP side: a UAS on the pod's address and the agent's SIP port (aiosipua).

INVITE -> 200 with an SDP answer (after a 180 and `ring_s` of ringing, if set) (or 503 while
draining, 486 when every slot is taken); ACK confirms; BYE ends the dialog and frees the slot;
re-INVITE is answered with the same SDP; OPTIONS gets 200 (the edge's dispatcher probes with it).
Each dialog is a call in MediaPod's slots, so voice_active_calls counts real dialogs.

Hand-offs to a human are real SIP through the edge, two ways:
- before answering (backendUnavailable): `302 Moved Temporarily` with the human as Contact. The
  call never takes a slot, and the edge follows the redirect (its failure route), so the caller
  simply reaches the human: no caller-side support is needed.
- mid-call (latencyOverBudget, callerRequest): a blind transfer, `REFER` with the human as
  Refer-To (RFC 3515). On `202 Accepted` the pod sends `BYE` and frees its slot at once; the
  caller's phone or SBC places the new call to the human through the edge. A proxy such as
  Kamailio cannot re-target an established dialog, and bridging the human through the pod would
  hold a media slot (and the pod's drain) for the rest of the call.
A caller asks for a human with a DTMF digit in a SIP `INFO` (application/dtmf-relay or
application/dtmf), answered 200.

aiosipua was chosen over sippy (a threaded reactor of its own, not asyncio) and pjsua2 (a C
stack with media, more than a signalling stand-in needs): it is asyncio-native, typed, has
no runtime dependencies, retransmits the 200 until the ACK over UDP, and handles dialogs,
re-INVITE, OPTIONS and CANCEL.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiosipua import IncomingCall, SipRequest, SipResponse, SipUAS, negotiate_sdp
from aiosipua.transport import UdpSipTransport


class Admitted(Protocol):
    @property
    def refusal(self) -> tuple[int, str] | None: ...
    @property
    def redirect(self) -> str | None: ...


class CallSlots(Protocol):
    """What the SIP side needs of a media pod (mediasim.MediaPod)."""

    def refusal(self, fill_to_target: bool = False) -> tuple[int, str] | None: ...
    async def admit(self, call_id: str, fill_to_target: bool = False) -> Admitted: ...
    def open_dialog(
        self,
        call_id: str,
        duration: float | None = None,
        caller: str = "",
        transfer: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> bool: ...
    def hang_up(self, call_id: str) -> None: ...
    def is_open(self, call_id: str) -> bool: ...
    def caller_asks(self, call_id: str, digit: str) -> bool: ...


logger = logging.getLogger("voiceop.media-sim")
SUPPORTED_CODECS = [0, 8]  # PCMU, PCMA
RTP_PORT = 40000  # advertised only: the stand-in carries signalling, not audio
TRANSFER_ANSWER_S = 4.0  # a REFER not accepted within this stays with the AI
FILL_HEADER = "x-voiceop-fill"
_DIGIT = re.compile(r"(?:^|\n)\s*(?:Signal\s*=\s*)?([0-9*#])\s*(?:\r?\n|$)", re.IGNORECASE)


def dtmf_digit(content_type: str, body: str) -> str | None:
    """The digit of a SIP INFO: `Signal=5` (application/dtmf-relay) or `5` (application/dtmf)."""
    if content_type.split(";")[0].strip().lower() not in ("application/dtmf-relay", "application/dtmf"):
        return None
    match = _DIGIT.search(body.strip() + "\n")
    return match.group(1) if match else None


def handoff_uri(target: str, edge_host: str) -> str:
    """A SIP URI for the human: a SIP URI as it is, an E.164 number at the edge that routes it."""
    if target.startswith(("sip:", "sips:")):
        return target
    return f"sip:{target}@{edge_host};user=phone"


class MediaUAS(SipUAS):
    """aiosipua's UAS plus what a media pod needs beyond it: SIP INFO (DTMF) and the answers to
    the requests it sends inside a dialog (REFER, BYE)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_info: Callable[[IncomingCall, SipRequest], None] | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[int]] = {}
        self._handlers["INFO"] = self._handle_info

    def _on_message(self, msg: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(msg, SipResponse):
            cseq = msg.cseq
            waiter = self._waiting.get((msg.call_id or "", cseq.seq)) if cseq is not None else None
            if waiter is not None and not waiter.done() and msg.status_code >= 200:
                waiter.set_result(msg.status_code)
            return
        super()._on_message(msg, addr)

    def _handle_info(self, request: SipRequest, addr: tuple[str, int]) -> None:
        call = self._calls.get(request.call_id or "")
        if call is None:
            self._send_error(request, 481, "Call/Transaction Does Not Exist")
            return
        if not self._validate_in_dialog(call.dialog, request):
            return
        self.transport.send_reply(call.dialog.create_response(request, 200, "OK"))
        if self.on_info is not None:
            self.on_info(call, request)

    async def send_in_dialog(self, call: IncomingCall, request: SipRequest, timeout: float) -> int:
        """Send a request on the call's dialog; its final status, or 408 when none came."""
        cseq = request.cseq
        assert cseq is not None
        key = (call.call_id, cseq.seq)
        self._waiting[key] = asyncio.get_running_loop().create_future()
        try:
            assert call.transport is not None
            call.transport.send(request, call.source_addr)
            return await asyncio.wait_for(self._waiting[key], timeout)
        except TimeoutError:
            return 408
        finally:
            self._waiting.pop(key, None)


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
        self.uas = MediaUAS(self.transport, user_agent="voiceop-media-sim")
        self.uas.on_info = self._on_info
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
        # The edge's first pass fills pods to their target share only (FILL_HEADER: target).
        to_target = (call.invite.get_header(FILL_HEADER) or "").strip().lower() == "target"
        refusal = self.pod.refusal(to_target)
        if refusal is not None:
            call.reject(*refusal)
            return
        # Asking the backend takes a round trip: the caller has had its 100 Trying meanwhile.
        asyncio.get_running_loop().create_task(self._admit(call, to_target))

    async def _admit(self, call: IncomingCall, to_target: bool) -> None:
        admission = await self.pod.admit(call.call_id, to_target)
        if admission.redirect is not None:
            self._redirect(call, handoff_uri(admission.redirect, self._edge_host(call)))
            return
        if admission.refusal is not None:
            call.reject(*admission.refusal)
            return
        if not self.pod.open_dialog(call.call_id, caller=call.caller, transfer=self._transfer):
            call.reject(486, "Busy Here")
            return
        self.transport.remember(call.invite)
        if self.ring_s <= 0:
            self._answer(call)
            return
        call.ringing()
        asyncio.get_running_loop().call_later(self.ring_s, self._answer_if_open, call)

    @staticmethod
    def _edge_host(call: IncomingCall) -> str:
        """The host the caller dialled (the edge): where a number to hand off to is routed."""
        to = call.invite.get_header("to") or ""
        match = re.search(r"sips?:[^@>;]*@([^>;]+)", to)
        return match.group(1) if match else "invalid"

    @staticmethod
    def _redirect(call: IncomingCall, uri: str) -> None:
        # aiosipua has no redirect of its own: a 3xx is a response with the target as Contact.
        call._send_response(302, "Moved Temporarily", extra_headers={"Contact": f"<{uri}>"})
        call.dialog.terminate()

    async def _transfer(self, call_id: str, target: str) -> bool:
        """Blind transfer: REFER the caller to the human; on 202, hang up our leg."""
        call = self.uas.get_call(call_id)
        if call is None:
            return False
        host, port = call._signaling_addr()
        uri = handoff_uri(target, self._edge_host(call))
        refer = call.dialog.create_request("REFER", via_host=host, via_port=port)
        refer.headers.set_single("Refer-To", f"<{uri}>")
        refer.headers.set_single("Referred-By", f"<{call.dialog.local_uri}>")
        refer.headers.set_single("Contact", f"<sip:{host}:{port}>")
        status = await self.uas.send_in_dialog(call, refer, TRANSFER_ANSWER_S)
        if not 200 <= status < 300:
            logger.info("REFER of %s to %s answered %s: the call stays", call_id, uri, status)
            return False
        call.hangup()
        self.transport.forget(call_id)
        return True

    def _on_info(self, call: IncomingCall, request: SipRequest) -> None:
        digit = dtmf_digit(request.content_type or "", request.text or "")
        if digit is not None:
            self.pod.caller_asks(call.call_id, digit)

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
