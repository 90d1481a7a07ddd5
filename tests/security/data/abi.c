/* mkdir through the three x86 syscall ABIs: native, x32 (bit 30), i386 (int 0x80). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static long i386_mkdir(const char *path, long mode) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(39L), "b"(path), "c"(mode) : "memory");
    return ret;
}

int main(void) {
    static const char a[] = "/tmp/native", b[] = "/tmp/x32", c[] = "/tmp/i386";
    setvbuf(stdout, NULL, _IONBF, 0);  /* a SIGSYS kill must not lose the lines before */
    long r = syscall(SYS_mkdir, a, 0755);
    printf("native %ld %d\n", r, r < 0 ? errno : 0);
    r = syscall(0x40000000L | 83, b, 0755);
    printf("x32 %ld %d\n", r, r < 0 ? errno : 0);
    r = i386_mkdir(c, 0755);
    printf("i386 %ld %ld\n", r, r < 0 ? -r : 0);
    fflush(stdout);
    return 0;
}
