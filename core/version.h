#ifndef PGCAST_VERSION_H
#define PGCAST_VERSION_H

#define PGCAST_VERSION "0.1.0"

const char *pgc_version(void);

#endif
