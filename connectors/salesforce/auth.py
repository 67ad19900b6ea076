"""Authenticated access to one Salesforce org: settings, login, the HTTP session, and the
one place every API call goes through (session refresh, API-usage reserve, error mapping).

simple-salesforce is used in its "direct session" mode only: Baton logs in itself, so the
library never refreshes a session on its own (its refresh drops custom headers such as
`Sforce-Auto-Assign`). `SalesforceApi.call` refreshes and re-sends the whole request,
headers included.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import urlparse

import jwt
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.api import DEFAULT_API_VERSION
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
)
from simple_salesforce.login import soap_login, token_login
from urllib3.util.retry import Retry

from adapter.errors import ConfigurationError, FatalCrmError, RetriableCrmError

log = logging.getLogger(__name__)
T = TypeVar("T")

AUTO_ASSIGN_OFF = {"Sforce-Auto-Assign": "FALSE"}
RETRY_LATER_CODES = {"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"}
_STANDARD_LOGIN = {"login", "test"}
_USAGE_RE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


class OutcomeUnknown(RetriableCrmError):
    """The request may have reached Salesforce (timeout, dropped connection, 5xx)."""


# --- settings ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SalesforceSettings:
    """The `SALESFORCE_*` / `BATON_SALESFORCE_*` settings. Secrets are kept out of repr."""

    domain: str = "login"
    api_version: str = DEFAULT_API_VERSION
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    private_key_file: str | None = None
    session_id: str | None = field(default=None, repr=False)
    instance_url: str | None = None
    ca_bundle: str | None = None
    timeout: float = 30.0
    api_reserve: str = "10%"
    reserve_retry_after: float = 900.0
    timezone: str | None = None
    lead_closed_statuses: tuple[str, ...] = ("Closed - Converted", "Closed - Not Converted", "Unqualified")

    @classmethod
    def from_mapping(cls, settings: Any) -> "SalesforceSettings":
        """Read from a plain mapping or `adapter.settings.Settings`; names what is missing."""
        # `adapter.settings.Settings` keeps its mapping in `.values`; a dict is used as it is.
        values: Mapping[str, Any] = settings if isinstance(settings, Mapping) else getattr(settings, "values", {})
        values = values or {}

        def get(name: str, default: str | None = None) -> str | None:
            value = values.get(name)
            return str(value).strip() if value not in (None, "") else default

        def number(name: str, default: float) -> float:
            raw = get(name)
            try:
                return float(raw) if raw is not None else default
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None

        statuses = get("BATON_SALESFORCE_LEAD_CLOSED_STATUSES")
        made = cls(
            domain=get("SALESFORCE_DOMAIN", "login"),
            api_version=(get("SALESFORCE_API_VERSION", DEFAULT_API_VERSION) or "").lstrip("vV"),
            username=get("SALESFORCE_USERNAME"),
            password=get("SALESFORCE_PASSWORD"),
            security_token=get("SALESFORCE_SECURITY_TOKEN"),
            client_id=get("SALESFORCE_CLIENT_ID"),
            client_secret=get("SALESFORCE_CLIENT_SECRET"),
            private_key_file=get("SALESFORCE_PRIVATE_KEY_FILE"),
            session_id=get("SALESFORCE_SESSION_ID"),
            instance_url=get("SALESFORCE_INSTANCE_URL"),
            ca_bundle=get("BATON_SALESFORCE_CA_BUNDLE"),
            timeout=number("BATON_SALESFORCE_TIMEOUT", 30.0),
            api_reserve=get("BATON_SALESFORCE_API_RESERVE", "10%"),
            reserve_retry_after=number("BATON_SALESFORCE_RESERVE_RETRY_AFTER", 900.0),
            timezone=get("BATON_SALESFORCE_TIMEZONE") or get("BATON_TIMEZONE"),
            **({"lead_closed_statuses": tuple(s.strip() for s in statuses.split(",") if s.strip())} if statuses else {}),
        )
        made.auth_method  # validate now: a missing combination fails at start-up
        made.reserve_for(1000)
        if made.ca_bundle and not Path(made.ca_bundle).is_file():
            raise ConfigurationError(f"BATON_SALESFORCE_CA_BUNDLE: no such file {made.ca_bundle!r}")
        return made

    @property
    def auth_method(self) -> str:
        """How to (re-)authenticate: jwt, password, client_credentials or session."""
        if self.client_id and self.username and self.private_key_file:
            return "jwt"
        if self.username and self.password:
            return "password"
        if self.client_id and self.client_secret:
            if self.domain in _STANDARD_LOGIN:
                raise ConfigurationError(
                    "client credentials need SALESFORCE_DOMAIN set to the org's My Domain host "
                    "(e.g. acme.my.salesforce.com), not 'login' or 'test'"
                )
            return "client_credentials"
        if self.session_id and self.instance_url:
            return "session"
        raise ConfigurationError(
            "Salesforce credentials are incomplete; set one of: "
            "SALESFORCE_CLIENT_ID + SALESFORCE_USERNAME + SALESFORCE_PRIVATE_KEY_FILE (JWT bearer); "
            "SALESFORCE_USERNAME + SALESFORCE_PASSWORD [+ SALESFORCE_SECURITY_TOKEN]; "
            "SALESFORCE_CLIENT_ID + SALESFORCE_CLIENT_SECRET + SALESFORCE_DOMAIN (client credentials); "
            "SALESFORCE_SESSION_ID + SALESFORCE_INSTANCE_URL"
        )

    @property
    def login_host(self) -> str:
        return login_host(self.domain)

    def reserve_for(self, total: int) -> int:
        """API calls to keep in reserve out of a daily allocation of `total`."""
        raw = self.api_reserve.strip()
        try:
            if raw.endswith("%"):
                return int(total * float(raw[:-1]) / 100)
            return int(float(raw))
        except ValueError:
            raise ConfigurationError(
                f"BATON_SALESFORCE_API_RESERVE must be a count or a percentage like '10%', not {raw!r}"
            ) from None


def login_host(domain: str) -> str:
    """`login`/`test`/`acme.my` → `*.salesforce.com`; a full host (or host:port) as given."""
    host = domain.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if ":" in host or host == "localhost" or re.fullmatch(r"[\d.]+", host):
        return host
    if host.endswith((".salesforce.com", ".force.com")):
        return host
    return f"{host}.salesforce.com"


# --- HTTP --------------------------------------------------------------------------------

class TimeoutSession(requests.Session):
    """A `requests.Session` that never waits forever: every request gets `timeout`."""

    def __init__(self, timeout: float, ca_bundle: str | None = None):
        super().__init__()
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        if ca_bundle:
            self.verify = ca_bundle

    def request(self, method, url, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.ca_bundle and kwargs.get("verify") is None:
            # Per request: REQUESTS_CA_BUNDLE in the environment would otherwise win over
            # `session.verify` (psf/requests#3829).
            kwargs["verify"] = self.ca_bundle
        return super().request(method, url, **kwargs)


def build_http_session(settings: SalesforceSettings) -> TimeoutSession:
    """Timeouts on every request; urllib3 retries connection failures and 502/503/504 on
    idempotent reads only (a POST that may have reached Salesforce is never re-sent here)."""
    session = TimeoutSession(settings.timeout, settings.ca_bundle)
    retry = Retry(
        total=3, connect=3, read=2, status=3, other=0,
        backoff_factor=0.5,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=10)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --- login -------------------------------------------------------------------------------

def login(settings: SalesforceSettings, http: requests.Session) -> tuple[str, str]:
    """Authenticate with the configured method; returns (session id, instance host[:port])."""
    method = settings.auth_method
    host = settings.login_host
    try:
        if method == "jwt":
            return _jwt_login(settings, http, host)
        if method == "password":
            return _password_login(settings, http, host)
        if method == "client_credentials":
            data = {"grant_type": "client_credentials", "client_id": settings.client_id,
                    "client_secret": settings.client_secret}
            return token_login(f"https://{host}/services/oauth2/token", data, settings.domain,
                               settings.client_id, None, None, http)
    except SalesforceAuthenticationFailed as exc:
        raise ConfigurationError(f"Salesforce login ({method}) at {host} failed: {exc.code}: {exc.message}") from None
    except requests.RequestException as exc:
        raise RetriableCrmError(f"Salesforce login at {host} failed: {type(exc).__name__}", endpoint="login") from None
    raise ConfigurationError("SALESFORCE_SESSION_ID has expired and no credentials are set to log in again")


def _jwt_login(settings: SalesforceSettings, http: requests.Session, host: str) -> tuple[str, str]:
    try:
        key = Path(settings.private_key_file or "").read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"SALESFORCE_PRIVATE_KEY_FILE cannot be read: {exc.strerror}") from None
    if host.endswith(".salesforce.com") or host.endswith(".force.com"):
        sandbox = settings.domain == "test" or ".sandbox." in host
        audience = "https://test.salesforce.com" if sandbox else "https://login.salesforce.com"
    else:
        audience = f"https://{host}"
    claims = {
        "iss": settings.client_id,
        "sub": settings.username,
        "aud": audience,
        "exp": int((datetime.now(timezone.utc) + timedelta(minutes=3)).timestamp()),
    }
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt.encode(claims, key, algorithm="RS256")}
    return token_login(f"https://{host}/services/oauth2/token", data, settings.domain,
                       settings.client_id or "", None, None, http)


def _password_login(settings: SalesforceSettings, http: requests.Session, host: str) -> tuple[str, str]:
    secret = escape((settings.password or "") + (settings.security_token or ""))
    body = (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com">'
        "<env:Header><urn:CallOptions><urn:client>baton</urn:client></urn:CallOptions></env:Header>"
        f"<env:Body><urn:login><urn:username>{escape(settings.username or '')}</urn:username>"
        f"<urn:password>{secret}</urn:password></urn:login></env:Body></env:Envelope>"
    )
    headers = {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}
    return soap_login(f"https://{host}/services/Soap/u/{settings.api_version}", body, headers, None, http)


# --- the API -----------------------------------------------------------------------------

def endpoint_label(method: str, url: str) -> str:
    """`GET query`, `PATCH composite/sobjects`, `POST metadata`: how calls are counted."""
    path = urlparse(url).path
    if "/services/Soap/m/" in path:
        return f"{method} metadata"
    if "/services/Soap/u/" in path:
        return f"{method} login"
    if "/services/oauth2/" in path:
        return f"{method} oauth2/{path.rsplit('/', 1)[-1]}"
    match = re.search(r"/services/data/v[\d.]+/(.*)$", path)
    rest = (match.group(1) if match else path).strip("/")
    if rest.startswith("query/") or rest.startswith("queryAll/"):
        return f"{method} query_more"
    if rest.startswith("sobjects/"):
        parts = rest.split("/")
        return f"{method} sobjects/{parts[1]}" + ("/" + parts[3] if len(parts) > 3 else "")
    return f"{method} {rest}"


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return str(content[0].get("errorCode") or "")
    if isinstance(content, Mapping):
        return str(content.get("errorCode") or content.get("error") or "")
    return ""


def _error_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return "; ".join(f"{c.get('errorCode')}: {c.get('message')}" for c in content if isinstance(c, Mapping))
    return str(content)[:500]


class SalesforceApi:
    """One org's authenticated simple-salesforce client, with Baton's call discipline."""

    def __init__(self, settings: SalesforceSettings, *, http: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff: Sequence[float] = (1.0, 4.0)):
        self.settings = settings
        self.http = http or build_http_session(settings)
        self.http.hooks["response"].append(self._observe)
        self.calls: Counter = Counter()
        self.usage: tuple[int, int] | None = None  # (used, allocation) from Sforce-Limit-Info
        self.logins = 0
        self._sleep = sleep
        self._backoff = tuple(backoff)
        self._sf: Salesforce | None = None

    def __repr__(self) -> str:
        return f"SalesforceApi(host={self.settings.login_host!r}, auth={self.settings.auth_method!r})"

    # session
    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            s = self.settings
            if s.session_id and s.instance_url:
                parsed = urlparse(s.instance_url if "//" in s.instance_url else f"https://{s.instance_url}")
                self._connect(s.session_id, parsed.netloc)
            else:
                self._connect(*self._login())
        return self._sf

    def _connect(self, session_id: str, instance: str) -> None:
        """A direct-session client on Baton's HTTP session: every URL and header built by
        simple-salesforce itself, and no Metadata API client holding an older session."""
        self._sf = Salesforce(session_id=session_id, instance=instance, version=self.settings.api_version,
                              session=self.http)

    @property
    def instance_url(self) -> str:
        return f"https://{self.sf.sf_instance}"

    def _login(self) -> tuple[str, str]:
        self.logins += 1
        return login(self.settings, self.http)

    def refresh(self) -> None:
        """Log in again and replace the client with one on the new session."""
        if self.settings.auth_method == "session":
            raise FatalCrmError("Salesforce session expired (INVALID_SESSION_ID) and only "
                                "SALESFORCE_SESSION_ID is configured; set credentials to refresh", status=401)
        self._connect(*self._login())
        log.info("salesforce session refreshed")

    # usage
    def _observe(self, response: requests.Response, *args, **kwargs) -> None:
        self.calls[endpoint_label(response.request.method or "GET", response.url)] += 1
        match = _USAGE_RE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.usage = (int(match.group(1)), int(match.group(2)))

    @property
    def remaining(self) -> int | None:
        return None if self.usage is None else self.usage[1] - self.usage[0]

    def check_reserve(self) -> None:
        """Slow down before the org's daily API allocation runs out (for every integration)."""
        if self.usage is None:
            return
        used, total = self.usage
        reserve = self.settings.reserve_for(total)
        if total - used <= reserve:
            raise RetriableCrmError(
                f"Salesforce API allocation nearly spent: {used} of {total} used, keeping {reserve} in reserve",
                retry_after=self.settings.reserve_retry_after, status=None, endpoint="limits",
            )

    # calls
    def call(self, endpoint: str, request: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """Run one API request with refresh-once, backoff on busy answers, and error mapping.

        A non-idempotent request (a create) whose outcome is unknown — 5xx, timeout, dropped
        connection — is never re-sent here: `OutcomeUnknown` lets the caller look first.
        """
        refreshed = False
        attempt = 0
        while True:
            self.check_reserve()
            try:
                return request(self.sf)
            except SalesforceExpiredSession as exc:
                if refreshed or _error_code(exc) not in ("INVALID_SESSION_ID", ""):
                    raise FatalCrmError(f"{endpoint}: {_error_message(exc)}", status=401, endpoint=endpoint) from None
                refreshed = True
                self.refresh()
            except SalesforceError as exc:
                code = _error_code(exc)
                unknown = exc.status >= 500 and code not in RETRY_LATER_CODES
                if unknown and not idempotent:
                    raise OutcomeUnknown(f"{endpoint}: {_error_message(exc)}", status=exc.status,
                                         endpoint=endpoint) from None
                if code in RETRY_LATER_CODES or unknown:
                    if attempt < len(self._backoff):
                        self._sleep(self._backoff[attempt])
                        attempt += 1
                        continue
                    raise RetriableCrmError(f"{endpoint}: {_error_message(exc)}", retry_after=60.0,
                               status=exc.status, endpoint=endpoint) from None
                raise FatalCrmError(f"{endpoint}: {_error_message(exc)}", status=exc.status, endpoint=endpoint) from None
            except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
                raise RetriableCrmError(f"{endpoint}: {type(exc).__name__}", endpoint=endpoint) from None
            except requests.RequestException as exc:
                raise OutcomeUnknown(f"{endpoint}: {type(exc).__name__}", endpoint=endpoint) from None

    def query(self, soql: str, endpoint: str = "query") -> list[dict]:
        return list(self.query_iter(soql, endpoint))

    def query_iter(self, soql: str, endpoint: str = "query") -> Iterator[dict]:
        """Every record of a SOQL query, page by page (nextRecordsUrl), each page one call."""
        yield from self.records(self.call(endpoint, lambda sf: sf.query(soql)), endpoint)

    def records(self, page: Mapping[str, Any] | None, endpoint: str = "query_more") -> Iterator[dict]:
        """Every record of a query result, or of a sub-query's result inside a record, following
        nextRecordsUrl: each further page is one `query_more` call."""
        while page:
            yield from page.get("records") or ()
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = page["nextRecordsUrl"]
            page = self.call(endpoint, lambda sf: sf.query_more(url, identifier_is_url=True))

    def collection(self, method: str, records: list[dict]) -> list[dict]:
        """One sObject Collections call (≤ 200 records, allOrNone false, auto-assign off).

        POST creates are not idempotent; PATCH updates are (the same values written twice).
        """
        body = {"allOrNone": False, "records": records}
        return self.call(
            f"{method} composite/sobjects",
            lambda sf: sf.restful("composite/sobjects", method=method, json=body, headers=dict(AUTO_ASSIGN_OFF)),
            idempotent=method != "POST",
        ) or []

    def metadata(self):
        """simple-salesforce's Metadata API client, its SOAP transport on Baton's HTTP session
        (timeouts, CA bundle, call counting); rebuilt after a session refresh."""
        sf = self.sf
        if sf._mdapi is None:
            from zeep.transports import Transport

            http = build_http_session(self.settings)
            http.hooks["response"].append(self._observe)
            mdapi = sf.mdapi
            mdapi._client.transport = Transport(session=http, timeout=self.settings.timeout,
                                                operation_timeout=self.settings.timeout)
        return sf._mdapi

    def describe(self, sobject: str) -> dict:
        return self.call(f"describe {sobject}", lambda sf: sf.restful(f"sobjects/{sobject}/describe"))

