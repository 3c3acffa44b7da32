"""HPACK's static Huffman code (RFC 7541, section 5.2 and appendix B), decoding only.

Clients may send a header's name or value Huffman-coded: grpc-go's and OkHttp's encoders do whenever that is
shorter, so ``/inference.GRPCInferenceService/ServerLive`` from a Go client reaches the port that answers while the
models compile (:mod:`~ovq.serving.grpc_starting`) coded this way.

The code is canonical (codes of one length are consecutive, in symbol order, and each length continues where the
shorter ones end), so the lengths of appendix B's table define it: :data:`CODE_LENGTHS` holds them, transcribed from
the RFC, and :func:`code_table` rebuilds each symbol's code (a test checks codes and the RFC's examples against it).
"""

from __future__ import annotations

import functools

EOS = 256
# the code length in bits of symbols 0..255 and EOS (256), sixteen a row (RFC 7541, appendix B)
CODE_LENGTHS = (
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,  # 0-15
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,  # 16-31
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,  # ' ' to '/'
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,  # '0' to '?'
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  # '@' to 'O'
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,  # 'P' to '_'
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,  # '`' to 'o'
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,  # 'p' to 127
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,  # 128-143
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,  # 144-159
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,  # 160-175
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,  # 176-191
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,  # 192-207
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,  # 208-223
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,  # 224-239
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,  # 240-255
    30,  # EOS
)


@functools.cache
def code_table() -> dict[tuple[int, int], int]:
    """``{(length, code): symbol}`` of the canonical code the lengths define."""
    table, code, length = {}, 0, 0
    for size, symbol in sorted((size, symbol) for symbol, size in enumerate(CODE_LENGTHS)):
        code <<= size - length
        length = size
        table[(size, code)] = symbol
        code += 1
    return table


def huffman_decode(data: bytes) -> bytes:
    """The bytes ``data`` codes; :class:`ValueError` for what RFC 7541 (5.2) calls a decoding error: the EOS symbol
    in the string, or a padding longer than 7 bits or not made of EOS's first (all one) bits."""
    table = code_table()
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code, length = code << 1 | (byte >> shift) & 1, length + 1
            symbol = table.get((length, code))
            if symbol is None:
                if length >= 30:
                    raise ValueError("not a Huffman code")
                continue
            if symbol == EOS:
                raise ValueError("EOS inside a Huffman-coded string")
            out.append(symbol)
            code = length = 0
    if length > 7 or code != (1 << length) - 1:
        raise ValueError("a Huffman-coded string's padding is not the start of EOS")
    return bytes(out)
