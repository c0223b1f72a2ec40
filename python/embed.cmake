# cmake -DIN=<file> -DOUT=<file.c> -P embed.cmake: writes a C file holding IN's bytes as
# `ctpy_proto_desc` (for python/glue.c: cortado.proto's descriptor set inside libcortado.so, so
# the Python module finds its schema wherever the library is).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n" body "${body}")
file(WRITE "${OUT}" "/* generated from ${IN} by python/embed.cmake */\n#include <stddef.h>\n"
     "const unsigned char ctpy_proto_desc[] = {\n${body}\n};\nconst size_t ctpy_proto_desc_size = ${size};\n")
