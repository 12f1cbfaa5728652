/* orderd/orderd.h - everything a module needs: #include <orderd/orderd.h>. */
#ifndef ORDERD_ORDERD_H
#define ORDERD_ORDERD_H
#include "orderd/status.h"
#include "orderd/module.h"
#include "orderd/storage.h"
#include "orderd/queue.h"
#include "orderd/step.h"
#include "orderd/host.h"
#endif
