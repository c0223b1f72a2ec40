/* Protocol-buffer text format (prototxt) over protobuf-c's message descriptors, and binary
 * protobuf files. One generic parser serves every message of the schema.
 *
 * A schema field whose name ends in "_" (base_, which would clash with protobuf-c's `base`
 * member) is spelled without the underscore in text: `base: 2`.
 *
 * Parse errors are reported as "<file>:<line>:<col>: <what was wrong>; expected <what>". */
#ifndef CT_PROTOTXT_H
#define CT_PROTOTXT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "cortado.h"

/* Parses text (len bytes, need not be NUL-terminated) as a message of type `desc`. `fname` is
 * used in error messages. On success *out is a message the caller frees with
 * protobuf_c_message_free_unpacked(*out, NULL); on failure *out is NULL. */
ct_status ct_prototxt_parse(const char *text, size_t len, const char *fname,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, ct_error *err);
/* Reads and parses a whole file. */
ct_status ct_prototxt_read_file(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                                ct_error *err);
/* The positions of a parse's submessages (each one's opening bracket), kept so that values the
 * parser accepted but a later stage refuses can be reported as file:line:col. */
typedef struct ct_srcmap ct_srcmap;
ct_status ct_prototxt_parse_mapped(const char *text, size_t len, const char *fname,
                                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, ct_srcmap **map,
                                   ct_error *err);
ct_status ct_prototxt_read_file_mapped(const char *path, const ProtobufCMessageDescriptor *desc,
                                       ProtobufCMessage **out, ct_srcmap **map, ct_error *err);
/* Where submessage `msg` (a pointer into the parsed message) opened; false when unknown. */
bool ct_srcmap_find(const ct_srcmap *m, const void *msg, int *line, int *col);
/* Where field `field` (its schema name) of message msg was first named; false when unknown. */
bool ct_srcmap_find_field(const ct_srcmap *m, const ProtobufCMessage *msg, const char *field, int *line, int *col);
/* Gives message `to` the positions recorded for `from` (a message it replaces, of the same or
 * another type: field positions carry over by field name). CT_ENOMEM when out of memory. */
ct_status ct_srcmap_alias(ct_srcmap *m, const ProtobufCMessage *to, const ProtobufCMessage *from);
/* The file name the map's positions are in. */
const char *ct_srcmap_file(const ct_srcmap *m);
void ct_srcmap_free(ct_srcmap *m); /* NULL is a no-op */

/* Bytes one element of a field of type t takes in a message (the parser and the printer). */
size_t ct_proto_elem_size(ProtobufCType t);

/* Prints a message in text format (two-space indent, Caffe's look: `layer {` blocks, enums by
 * name, only fields that are set). Returns malloc'ed text, or NULL when out of memory. */
char *ct_prototxt_print(const ProtobufCMessage *msg);
/* Writes ct_prototxt_print's text to a file crash-safely. */
ct_status ct_prototxt_write_file(const char *path, const ProtobufCMessage *msg, ct_error *err);

/* Binary protobuf files (.caffemodel, .solverstate, .binaryproto). Reading checks the file size
 * before allocating; writing goes to a temporary file, fsyncs it and renames it over the target,
 * so a crash leaves either the old file or the new one. */
ct_status ct_proto_read_binary(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                               ct_error *err);
ct_status ct_proto_write_binary(const char *path, const ProtobufCMessage *msg, ct_error *err);
/* Writes bytes to path crash-safely (temp file in the same directory, fsync, rename). */
ct_status ct_write_file_atomic(const char *path, const void *data, size_t len, ct_error *err);
/* Reads a whole file into a malloc'ed, NUL-terminated buffer. max_bytes bounds the size. */
ct_status ct_read_file(const char *path, size_t max_bytes, char **out, size_t *len, ct_error *err);

#endif
