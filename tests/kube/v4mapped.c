/* AI_V4MAPPED for nss_wrapper: preloaded before libnss_wrapper.so in pod processes.
 *
 * Why: nss_wrapper (1.1.12, Debian 12) answers getaddrinfo(AF_INET6, AI_V4MAPPED) for a name
 * of its hosts file, or for a numeric IPv4 address, with EAI_ADDRFAMILY, where glibc returns
 * the IPv4 addresses as IPv4-mapped IPv6 ones (::ffff:a.b.c.d). torch's c10d client socket
 * (TCPStore) asks exactly that first and retries it until its timeout without trying AF_INET,
 * so init_process_group never connected under the fixture while it does on a real cluster.
 *
 * This getaddrinfo asks the next one (nss_wrapper's); only when that fails for an AF_INET6 +
 * AI_V4MAPPED request does it ask again for AF_INET and return the answers mapped, as glibc
 * does. Each returned node is one malloc'd block (ai_canonname its own), so glibc's
 * freeaddrinfo, which nss_wrapper also uses, frees it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

static struct addrinfo *mapped_node(const struct addrinfo *v4) {
    struct addrinfo *node = calloc(1, sizeof(struct addrinfo) + sizeof(struct sockaddr_in6));
    if (node == NULL) {
        return NULL;
    }
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)v4->ai_addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(node + 1);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = in4->sin_port;
    in6->sin6_addr.s6_addr[10] = 0xff;
    in6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&in6->sin6_addr.s6_addr[12], &in4->sin_addr, 4);
    node->ai_flags = v4->ai_flags;
    node->ai_family = AF_INET6;
    node->ai_socktype = v4->ai_socktype;
    node->ai_protocol = v4->ai_protocol;
    node->ai_addrlen = sizeof(struct sockaddr_in6);
    node->ai_addr = (struct sockaddr *)in6;
    if (v4->ai_canonname != NULL) {
        node->ai_canonname = strdup(v4->ai_canonname);
    }
    return node;
}

int getaddrinfo(const char *name, const char *service, const struct addrinfo *hints,
                struct addrinfo **result) {
    getaddrinfo_fn next = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (next == NULL) {
        return EAI_SYSTEM;
    }
    int code = next(name, service, hints, result);
    if (code == 0 || hints == NULL || hints->ai_family != AF_INET6 ||
        !(hints->ai_flags & AI_V4MAPPED)) {
        return code;
    }
    struct addrinfo v4_hints = *hints;
    v4_hints.ai_family = AF_INET;
    v4_hints.ai_flags &= ~(AI_V4MAPPED | AI_ALL);
    struct addrinfo *v4 = NULL;
    if (next(name, service, &v4_hints, &v4) != 0) {
        return code;
    }
    struct addrinfo *head = NULL;
    struct addrinfo **tail = &head;
    for (const struct addrinfo *each = v4; each != NULL; each = each->ai_next) {
        if (each->ai_family != AF_INET) {
            continue;
        }
        *tail = mapped_node(each);
        if (*tail == NULL) {
            freeaddrinfo(head);
            freeaddrinfo(v4);
            return EAI_MEMORY;
        }
        tail = &(*tail)->ai_next;
    }
    freeaddrinfo(v4);
    if (head == NULL) {
        return code;
    }
    *result = head;
    return 0;
}
