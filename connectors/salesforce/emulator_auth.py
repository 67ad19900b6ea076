"""Logins for the Salesforce emulator: OAuth 2.0 token flows, SOAP login, session tokens.

Supported: POST /services/oauth2/token with grant_type password, client_credentials and
urn:ietf:params:oauth:grant-type:jwt-bearer, and the partner SOAP `login` call that
simple-salesforce uses for username + password + security token. Failures answer the way
Salesforce does (`{"error", "error_description"}` for OAuth, a SOAP fault for SOAP) so the
library raises `SalesforceAuthenticationFailed` with the real codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import jwt
from defusedxml import ElementTree
from flask import Blueprint, Response, jsonify, request

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator

__all__ = ["Credentials", "SessionRegistry", "auth_blueprint", "JWT_BEARER"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_PARTNER_NS = "urn:partner.soap.sforce.com"
_ACCEPTED_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


@dataclass(frozen=True)
class Credentials:
    """What the emulated org accepts at login; every flow logs in as the integration user."""

    username: str = "integration@baton-emulator.example"
    password: str = "emulator-password"
    security_token: str = "EMULATORTOKEN"
    consumer_key: str = "3MVG9emulatorConsumerKey"
    consumer_secret: str = "emulator-consumer-secret"
    jwt_public_key: str | None = None  # PEM; None skips the signature check but not the claims


class SessionRegistry:
    """Access tokens in force; `expire_all` models a revoked or timed-out session."""

    def __init__(self, org_id: str) -> None:
        self._org_id = org_id
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: str) -> str:
        token = f"{self._org_id[:15]}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._users[token] = user_id
        return token

    def user_for(self, token: str | None) -> str | None:
        with self._lock:
            return self._users.get(token or "")

    def expire_all(self) -> None:
        with self._lock:
            self._users.clear()


def auth_blueprint(emulator: "SalesforceEmulator") -> Blueprint:
    blueprint = Blueprint("salesforce_auth", __name__)

    @blueprint.post("/services/oauth2/token")
    def token() -> Response:
        grant_type = request.form.get("grant_type", "")
        credentials = emulator.credentials
        if grant_type == "password":
            if request.form.get("client_id") != credentials.consumer_key or \
                    request.form.get("client_secret") != credentials.consumer_secret:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if request.form.get("username") != credentials.username or request.form.get("password") not in (
                    credentials.password, credentials.password + credentials.security_token):
                return _oauth_error("invalid_grant", "authentication failure")
        elif grant_type == "client_credentials":
            client_id, client_secret = _client_from_request()
            if client_id != credentials.consumer_key or client_secret != credentials.consumer_secret:
                return _oauth_error("invalid_client", "invalid client credentials")
        elif grant_type == JWT_BEARER:
            problem = _check_assertion(request.form.get("assertion", ""), emulator)
            if problem:
                return _oauth_error(*problem)
        else:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        return jsonify(_token_response(emulator))

    @blueprint.post("/services/Soap/u/<version>")
    def soap_login(version: str) -> Response:
        username, password = _soap_login_fields(request.get_data())
        credentials = emulator.credentials
        if username != credentials.username or password not in (
                credentials.password, credentials.password + credentials.security_token):
            return _soap_login_fault()
        session_id = emulator.sessions.issue(emulator.state.integration_user_id)
        server = f"https://{emulator.instance_host}"
        org = emulator.org_id
        user = emulator.state.integration_user_id
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns="{_PARTNER_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{server}/services/Soap/m/{version}/{org}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{server}/services/Soap/u/{version}/{org}</serverUrl>"
            f"<sessionId>{escape(session_id)}</sessionId><userId>{user}</userId>"
            f"<userInfo><organizationId>{org}</organizationId><userName>{escape(username)}</userName>"
            "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(body, 200, content_type="text/xml; charset=utf-8")

    return blueprint


def _token_response(emulator: "SalesforceEmulator") -> dict:
    user_id = emulator.state.integration_user_id
    identity = f"https://login.salesforce.com/id/{emulator.org_id}/{user_id}"
    issued_at = str(int(time.time() * 1000))
    # Salesforce signs id + issued_at with the consumer secret so clients can check the response.
    digest = hmac.new(emulator.credentials.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
    return {
        "access_token": emulator.sessions.issue(user_id),
        "instance_url": f"https://{emulator.instance_host}",
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(digest.digest()).decode(),
        "scope": "api",
    }


def _client_from_request() -> tuple[str | None, str | None]:
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Basic "):
        try:
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
            return client_id, client_secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return request.form.get("client_id"), request.form.get("client_secret")


def _check_assertion(assertion: str, emulator: "SalesforceEmulator") -> tuple[str, str] | None:
    """The JWT bearer checks Salesforce documents: structure, signature, iss, aud, sub, exp."""
    credentials = emulator.credentials
    try:
        header = jwt.get_unverified_header(assertion)
        if credentials.jwt_public_key:
            claims = jwt.decode(assertion, credentials.jwt_public_key, algorithms=["RS256"],
                                options={"verify_aud": False, "verify_exp": False})
        else:
            claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidSignatureError:
        return "invalid_grant", "invalid assertion"
    except jwt.PyJWTError:
        return "invalid_grant", "invalid assertion"
    if header.get("alg") != "RS256":
        return "invalid_grant", "invalid assertion"
    if claims.get("iss") != credentials.consumer_key:
        return "invalid_client_id", "client identifier invalid"
    audiences = _ACCEPTED_AUDIENCES + (emulator.url, f"https://{emulator.instance_host}")
    if claims.get("aud") not in audiences:
        return "invalid_grant", "audience is invalid"
    if claims.get("sub") != credentials.username:
        return "invalid_grant", "user hasn't approved this consumer"
    try:
        expires = int(claims["exp"])
    except (KeyError, TypeError, ValueError):
        return "invalid_grant", "invalid assertion"
    if expires < time.time():
        return "invalid_grant", "expired authorization code"
    return None


def _soap_login_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None, None
    return (root.findtext(f".//{{{_PARTNER_NS}}}username"), root.findtext(f".//{{{_PARTNER_NS}}}password"))


def _oauth_error(error: str, description: str) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = 400
    return response


def _soap_login_fault() -> Response:
    message = "Invalid username, password, security token; or user locked out."
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode>"
        f"<faultstring>INVALID_LOGIN: {message}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
        f"<sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, 500, content_type="text/xml; charset=utf-8")
