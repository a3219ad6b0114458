"""Sample payloads for the event catalogue, and the receiver snippets its page shows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import Merchant
    from catalogue.models import EventType

SAMPLE_EVENT_ID = "evt_2f6rq8kd1m0x7cvb5ny3hw4a"
SAMPLE_CREATED_AT = "2025-06-30T12:54:31.000Z"
SAMPLE_FLAT_CREATED_AT = "2025-06-30 12:54:31"


def sample_body(event_type: EventType, merchant: Merchant | None = None) -> str:
    """The body a receiver gets for an event of this type, with the type's sample data."""
    envelope = {
        "id": SAMPLE_EVENT_ID,
        "type": event_type.name,
        "created_at": SAMPLE_CREATED_AT,
        "merchant_id": merchant.public_id if merchant else "mrc_...",
        "sequence": 42,
        "data": event_type.sample,
    }
    return json.dumps(envelope, indent=2, ensure_ascii=False)


def sample_flat_body(event_type: EventType, merchant: Merchant | None = None) -> str:
    """The same event in the flat style (SalesPlay's shape): the data's keys at the top."""
    envelope = {
        "merchant_id": merchant.public_id if merchant else "mrc_...",
        "type": event_type.name,
        "created_at": SAMPLE_FLAT_CREATED_AT,
    }
    sample = event_type.sample
    if isinstance(sample, dict):
        envelope.update((k, v) for k, v in sample.items() if k not in envelope)
    else:
        envelope["data"] = sample
    return json.dumps(envelope, indent=2, ensure_ascii=False)


# --- receiver snippets: how to verify our signature (the catalogue page shows them) ---------

_PYTHON = '''\
import base64
import hashlib
import hmac
import time

SECRET = "whsec_..."  # your webhook's signing secret


def verify(body: bytes, headers: dict[str, str]) -> bool:
    """True when POS Webhooks signed this request with your secret.

    body: the raw request body, exactly as received (before any JSON parsing).
    headers: the request headers, with lower-case names.
    """
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 5 * 60:
        return False  # too old, or from the future: refuse replays
    if SECRET.startswith("whsec_"):
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
    else:
        key = SECRET.encode()  # a secret you chose yourself
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # During a secret rotation, two signatures arrive, separated by a space.
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in headers.get("webhook-signature", "").split()
    )
'''

_NODE = """\
const crypto = require("node:crypto");

const SECRET = "whsec_..."; // your webhook's signing secret

// body: the raw request body as a Buffer, exactly as received
//   (with Express: app.post("/webhooks/pos", express.raw({ type: "*/*" }), ...)).
// headers: the request headers (Node gives them lower-case names).
function verify(body, headers) {
  const id = headers["webhook-id"] || "";
  const timestamp = headers["webhook-timestamp"] || "";
  if (!/^[0-9]+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 5 * 60) {
    return false; // too old, or from the future: refuse replays
  }
  const key = SECRET.startsWith("whsec_")
    ? Buffer.from(SECRET.slice("whsec_".length), "base64")
    : Buffer.from(SECRET, "utf8"); // a secret you chose yourself
  const hmac = crypto.createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body);
  const expected = Buffer.from("v1," + hmac.digest("base64"));
  // During a secret rotation, two signatures arrive, separated by a space.
  return (headers["webhook-signature"] || "").split(" ").some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

module.exports = { verify };
"""

_PHP = """\
<?php
const WEBHOOK_SECRET = "whsec_..."; // your webhook's signing secret

// $body: the raw request body, exactly as received; $headers: lower-case names.
function verify_webhook(string $body, array $headers): bool
{
    $id = $headers["webhook-id"] ?? "";
    $timestamp = $headers["webhook-timestamp"] ?? "";
    if (!ctype_digit($timestamp) || abs(time() - (int) $timestamp) > 5 * 60) {
        return false; // too old, or from the future: refuse replays
    }
    $key = str_starts_with(WEBHOOK_SECRET, "whsec_")
        ? base64_decode(substr(WEBHOOK_SECRET, strlen("whsec_")))
        : WEBHOOK_SECRET; // a secret you chose yourself
    $expected = "v1," . base64_encode(hash_hmac("sha256", "$id.$timestamp.$body", $key, true));
    // During a secret rotation, two signatures arrive, separated by a space.
    foreach (explode(" ", $headers["webhook-signature"] ?? "") as $candidate) {
        if (hash_equals($expected, $candidate)) {
            return true;
        }
    }
    return false;
}

$body = file_get_contents("php://input");
$headers = array_change_key_case(getallheaders(), CASE_LOWER);
if (!verify_webhook($body, $headers)) {
    http_response_code(401);
    exit;
}
$event = json_decode($body, true);
// ... handle $event["type"] and $event["data"] here (flat payloads: the data's own keys,
// e.g. $event["inventory_levels"], sit beside $event["type"]), then answer quickly:
http_response_code(200);
"""

_CURL = """\
# Send your receiver a request signed exactly as we sign ours, to check that it verifies.
SECRET='whsec_...'                       # your webhook's signing secret
URL='https://example.com/webhooks/pos'   # your receiver
BODY='{"id":"evt_curl_test","type":"webhook.test","sequence":1,"data":{"message":"Signed"}}'
ID="msg_$(date +%s)"
TS="$(date +%s)"
KEY_HEX="$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -v -tx1 | tr -d ' \\n')"
SIG="$(printf '%s' "$ID.$TS.$BODY" \\
  | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY_HEX" -binary | base64)"
curl -sS -i -X POST "$URL" \\
  -H 'content-type: application/json' \\
  -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" \\
  --data-raw "$BODY"
"""


SNIPPETS: list[tuple[str, str, str]] = [
    ("python", "Python", _PYTHON),
    ("node", "Node.js", _NODE),
    ("php", "PHP", _PHP),
    ("curl", "curl", _CURL),
]
