/* Placeholder until the CLI lands. */
#include <stdio.h>
int main(void) {
  fputs("cortado: not built yet\n", stderr);
  return 1;
}
