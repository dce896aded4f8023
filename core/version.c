/* pgcast's version, one place for every program's --version. */
#include "version.h"

const char *pgc_version(void) { return PGCAST_VERSION; }
