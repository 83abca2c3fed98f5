"""A MySQL / MariaDB query's result columns without running it: the binary protocol's
COM_STMT_PREPARE, whose answer carries the column definitions of the statement (the server
parses and resolves it, it executes nothing), then COM_STMT_CLOSE.

PyMySQL speaks only the text protocol, so the two commands are sent on aiomysql's connection
with its own packet reader, as `connectors/mysqlrows.py` reads row packets. The placeholders
are `?`: no parameter value is needed. PyMySQL does not ask for CLIENT_DEPRECATE_EOF, so each
list of definitions ends with an EOF packet.
"""

from __future__ import annotations

import struct
from typing import Any

from pymysql.constants import COMMAND  # type: ignore[import-untyped]
from pymysql.protocol import FieldDescriptorPacket  # type: ignore[import-untyped]

from reporthubd.connectors.base import Column
from reporthubd.connectors.mysqlrows import column_of

_PREPARE_OK = struct.Struct("<xIHH")
"""status (0x00), statement id, number of columns, number of parameters."""


async def prepared_columns(conn: Any, sql: str) -> list[Column]:
    """The columns of `sql` (with `?` placeholders) as `column_of` types them. A statement the
    server refuses raises PyMySQL's error (its code and message), the connection still usable."""
    await conn._execute_command(COMMAND.COM_STMT_PREPARE, sql)
    answer = await conn._read_packet()  # an error packet raises here
    statement_id, ncolumns, nparams = _PREPARE_OK.unpack_from(answer.get_all_data())
    for _ in range(nparams):
        await conn._read_packet(FieldDescriptorPacket)
    if nparams:
        await conn._read_packet()  # EOF
    fields = [await conn._read_packet(FieldDescriptorPacket) for _ in range(ncolumns)]
    if ncolumns:
        await conn._read_packet()  # EOF
    # No answer comes to COM_STMT_CLOSE. (A read that failed above broke the connection, which
    # the connector then drops: the server frees the statement with the session.)
    await conn._execute_command(COMMAND.COM_STMT_CLOSE, struct.pack("<I", statement_id))
    return [column_of(field)[0] for field in fields]
