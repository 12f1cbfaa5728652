/* bind_loopback.c - LD_PRELOAD shim: a listening socket bound to the wildcard
 * address (0.0.0.0 or ::) is bound to loopback instead (127.0.0.1, or
 * ::ffff:127.0.0.1 on a dual-stack IPv6 socket).  Used by tests/aws/aws-emulators.sh for
 * DynamoDB Local, which has no bind-address option.  Binds with port 0
 * (ephemeral client binds) are left alone.
 *
 *   gcc -shared -fPIC -O2 -o libbindloopback.so bind_loopback.c -ldl
 *   LD_PRELOAD=$PWD/libbindloopback.so java ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");

    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_port != 0 && a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (a.sin6_port != 0 && IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) {
            /* ::ffff:127.0.0.1 - IPv4 clients of 127.0.0.1 still reach a dual-stack socket */
            static const unsigned char mapped_lo[16] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff,127,0,0,1};
            memcpy(&a.sin6_addr, mapped_lo, 16);
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
