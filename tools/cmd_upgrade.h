/* `cortado upgrade IN -o OUT`: what Caffe's upgrade_net_proto_text, upgrade_net_proto_binary and
 * upgrade_solver_proto_text do, in one command that tells the three kinds of file apart. */
#ifndef CT_CMD_UPGRADE_H
#define CT_CMD_UPGRADE_H

/* Returns the process exit status: 0, or 1 when the file cannot be read, recognised, upgraded
 * or written (nothing is written then). log receives the progress lines. */
int cmd_upgrade(const char *in, const char *out, void (*log)(void *ctx, const char *line), void *log_ctx);

#endif
