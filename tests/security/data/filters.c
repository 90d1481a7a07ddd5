/* Calls Docker's default seccomp profile filters by argument; prints "<name> <errno>". */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long r) {
    if (r == 0) {  /* a child of clone: leave at once */
        _exit(0);
    }
    if (r > 0) {
        waitpid((pid_t)r, NULL, 0);
        printf("%s ok\n", name);
    } else {
        printf("%s %d\n", name, errno);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    report("clone-plain", syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L));
    report("clone-newuser", syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L));
    report("clone-newns-highbits",
           syscall(SYS_clone, (long)((1UL << 40) | CLONE_NEWNS | SIGCHLD), 0L, 0L, 0L, 0L));
    printf("unshare-user %d\n", unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
    int s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    printf("socket-vsock %d\n", s >= 0 ? 0 : errno);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("socket-unix %d\n", s >= 0 ? 0 : errno);
    printf("personality-query %d\n", personality(0xffffffff) == -1 ? errno : 0);
    printf("personality-rie %d\n", personality(READ_IMPLIES_EXEC) == -1 ? errno : 0);
    return 0;
}
