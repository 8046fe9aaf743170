"""Who is using the dashboard, and what they may do.

Three ways, chosen by `twin dashboard`:
- bound to 127.0.0.1 with no users file: one local user ('local', engineer), the single-user default;
- a users file (LINETWIN_AUTH, `--auth FILE`): login with bcrypt-hashed passwords (streamlit-authenticator), a signed
  cookie keeps the login across reloads; required when the dashboard listens on another address;
- behind a reverse proxy that authenticates (LINETWIN_AUTH_HEADER, `--auth-header X-Forwarded-User`): the user is
  the header's value, roles come from the users file (unknown users are viewers); only on 127.0.0.1, where nobody
  but the proxy can set the header.

Roles: viewer (looks), operator (acknowledges, clears and comments alarms), engineer (also starts runs and uploads
scenarios, reads the audit log). The users file:

    cookie_key: 9c1f...            # 32+ random characters: signs the login cookie
    users:
      alice: {name: Alice Meyer, role: operator, password: "$2b$12$..."}   # `twin passwd` prints a hash
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import streamlit as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from twin.scenario import parse_yaml

ROLES = ("viewer", "operator", "engineer")
NEEDS = {"acknowledge": "operator", "comment": "operator", "clear": "operator", "start_run": "engineer",
         "upload": "engineer", "audit": "engineer"}
# user names as the sign-in form matches them: it lower-cases what is typed and the users file's names alike
USER_NAME = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
USER_NAME_FIX = "user names are letters, digits, '.', '_', '@' and '-', at most 64, matched in lower case"


def user_key(name: str) -> str | None:
    """The users-file key of a user name (lower case, as the sign-in form matches it), None if it is not one."""
    key = name.lower()
    return key if re.fullmatch(USER_NAME, key) else None


class UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=100)
    role: Literal["viewer", "operator", "engineer"] = "viewer"
    password: str | None = Field(None, pattern=r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$",
                                 description="a bcrypt hash (`twin passwd`), never the password itself")


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cookie_key: str = Field(min_length=32, description="random secret signing the login cookie")
    users: dict[Annotated[str, Field(pattern=USER_NAME)], UserEntry] = Field(min_length=1)

    @field_validator("users", mode="before")
    @classmethod
    def _lower_case_names(cls, users: Any) -> Any:
        """Names in lower case (the sign-in form's): 'Alice' and 'alice' are one user, written once."""
        if not isinstance(users, dict):
            return users
        seen: dict[str, Any] = {}
        for name in users:
            key = name.lower() if isinstance(name, str) else name
            if key in seen:
                raise ValueError(f"users {seen[key]!r} and {name!r} are the same user (names are matched in lower "
                                 "case); keep one")
            seen[key] = name
        return {(k.lower() if isinstance(k, str) else k): v for k, v in users.items()}


class AccessError(ValueError):
    """The users file is wrong: the message names the file, the field and the fix."""


def load_users(path: Path) -> UsersFile:
    """Read and check a users file; AccessError naming the file, field and fix."""
    doc, _ = parse_yaml(path, "users", AccessError)  # size, aliases, nesting: the checks of every config file
    try:
        return UsersFile.model_validate(doc)
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "value_error":  # the same user twice: the message says it all
            raise AccessError(f"{path}: {str(err['msg']).removeprefix('Value error, ')}.") from None
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        fix = ("store a bcrypt hash printed by `twin passwd`, never the password" if where.endswith("password")
               else f"roles are {', '.join(ROLES)}" if where.endswith("role")
               else USER_NAME_FIX if where.endswith("[key]")
               else "see the users file format in docs/security.md")
        raise AccessError(f"{path}: field '{where}': {err['msg']}; {fix}.") from None


@dataclass(frozen=True)
class User:
    """The person at the screen and their role."""

    name: str
    role: str

    def can(self, action: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(NEEDS[action])


def _from_header(header: str, users: UsersFile | None) -> User | None:
    name = st.context.headers.get(header)
    if not name:
        return None
    key = user_key(name)
    entry = users.users.get(key) if users and key else None
    return User(name, entry.role if entry else "viewer")


def _login(users: UsersFile) -> User | None:
    import streamlit_authenticator as stauth

    credentials = {"usernames": {u: {"name": e.name or u, "password": e.password, "roles": [e.role],
                                     "email": f"{u}@localhost"}
                                 for u, e in users.users.items() if e.password}}
    auth = stauth.Authenticate(credentials, "linetwin_login", users.cookie_key, 1.0, auto_hash=False)
    try:
        auth.login(location="main", max_login_attempts=None)
    except stauth.utilities.exceptions.LoginError as e:
        st.error(str(e))
    if not st.session_state.get("authentication_status"):
        if st.session_state.get("authentication_status") is False:
            st.error("Wrong user name or password.")
        return None
    auth.logout("log out", location="sidebar")
    name = st.session_state["username"]
    return User(name, users.users[name].role)


def current_user() -> User:
    """The signed-in user, or a login form and a stopped page until there is one."""
    header = os.environ.get("LINETWIN_AUTH_HEADER")
    file = os.environ.get("LINETWIN_AUTH")
    users = load_users(Path(file)) if file else None
    if header:
        user = _from_header(header, users)
        if user is None:
            st.error(f"Not signed in: the reverse proxy did not send the {header} header.")
            st.stop()
    elif users is not None:
        user = _login(users)
        if user is None:
            st.stop()
    else:
        user = User("local", "engineer")
    st.session_state["user"] = user
    return user


def user() -> User:
    """The user this session signed in as (app.py asked first); 'local' when a page runs on its own in a test."""
    found = st.session_state.get("user")
    return found if isinstance(found, User) else current_user()
